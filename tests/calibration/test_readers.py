"""--data readers: formats, column detection, and every refusal as a UsageError (exit 2)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from edgeify.calibration.readers import Example, map_labels, read_examples
from edgeify.errors import UsageError

ID2LABEL = {0: "negative", 1: "neutral", 2: "positive"}


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def usage_error(path, **kwargs) -> str:
    """Read expecting a UsageError; returns its message (and checks the exit code)."""
    with pytest.raises(UsageError) as info:
        read_examples(path, **kwargs)
    assert info.value.exit_code == 2
    return str(info.value)


# --- formats and default columns -------------------------------------------------------

def test_csv_default_columns_text_and_sentiment(tmp_path):
    p = write(tmp_path / "d.csv",
              'sentiment,confidence,text\n'
              'negative,1.0,"I hate delays, really"\n'
              'positive,0.6,  love it  \n')
    assert read_examples(p, needs_labels=True) == [
        Example("I hate delays, really", "negative"),
        Example("love it", "positive"),
    ]


def test_csv_prefers_sentence_over_text_and_label_over_sentiment(tmp_path):
    p = write(tmp_path / "d.csv", "text,sentence,sentiment,label\nT,S,neg,1\n")
    assert read_examples(p, needs_labels=True) == [Example("S", "1")]


def test_tsv(tmp_path):
    p = write(tmp_path / "d.tsv", "sentence\tlabel\na, b, c\t0\nd\t1\n")
    assert read_examples(p, needs_labels=True) == [Example("a, b, c", "0"), Example("d", "1")]


def test_jsonl_with_integer_labels_and_blank_lines(tmp_path):
    p = write(tmp_path / "d.jsonl",
              json.dumps({"text": "good", "label": 1}) + "\n\n"
              + json.dumps({"text": "bad", "label": 0}) + "\n")
    assert read_examples(p, needs_labels=True) == [Example("good", "1"), Example("bad", "0")]


def test_json_suffix_is_read_as_json_lines(tmp_path):
    p = write(tmp_path / "d.json", '{"sentence": "x", "label": "pos"}\n')
    assert read_examples(p, needs_labels=True) == [Example("x", "pos")]


@pytest.mark.parametrize("suffix", [".txt", ".raw", ".text"])
def test_plain_text_for_language_model(tmp_path, suffix):
    p = write(tmp_path / f"d{suffix}", " first line \r\n\r\n   \nsecond line\n")
    assert read_examples(p, needs_labels=False) == [Example("first line"), Example("second line")]


def test_unlabelled_table_for_language_model_ignores_labels(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\nhello,\nworld,\n")
    assert read_examples(p, needs_labels=False) == [Example("hello"), Example("world")]


def test_explicit_columns(tmp_path):
    p = write(tmp_path / "d.csv", "body,stars,text\nnice,5,IGNORED\nmeh,2,IGNORED\n")
    got = read_examples(p, needs_labels=True, text_column="body", label_column="stars")
    assert got == [Example("nice", "5"), Example("meh", "2")]


def test_rows_with_blank_text_are_skipped(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\n   ,pos\nkept,neg\n")
    assert read_examples(p, needs_labels=True) == [Example("kept", "neg")]


# --- refusals ------------------------------------------------------------------------

def test_missing_file(tmp_path):
    msg = usage_error(tmp_path / "nope.csv", needs_labels=True)
    assert msg == f"data file not found: {tmp_path / 'nope.csv'}"


def test_directory(tmp_path):
    msg = usage_error(tmp_path, needs_labels=True)
    assert msg == f"--data must be a file, got a directory: {tmp_path}"


@pytest.mark.parametrize("name", ["d.xlsx", "d.parquet", "noext"])
def test_unsupported_suffix(tmp_path, name):
    p = write(tmp_path / name, "text,label\na,b\n")
    msg = usage_error(p, needs_labels=True)
    assert msg.startswith(f"{p}: unsupported data format")
    assert "accepted: .csv, .json, .jsonl, .raw, .text, .tsv, .txt" in msg


@pytest.mark.parametrize("name, expected", [
    ("zero.csv", "(no header row)"),
    ("zero.tsv", "(no header row)"),
    ("zero.jsonl", "(no rows)"),
    ("header.csv", "(no rows)"),
    ("header.tsv", "(no rows)"),
])
def test_empty_tables(tmp_path, name, expected):
    body = {"header.csv": "text,label\n", "header.tsv": "text\tlabel\n"}.get(name, "")
    p = write(tmp_path / name, body)
    msg = usage_error(p, needs_labels=True)
    assert msg.startswith(f"{p}: empty ")
    assert msg.endswith(expected)


@pytest.mark.parametrize("body", ["", "\n  \n\n"])
def test_empty_plain_text(tmp_path, body):
    p = write(tmp_path / "d.txt", body)
    assert usage_error(p, needs_labels=False) == f"{p}: empty data file"


def test_plain_text_for_labelled_task(tmp_path):
    p = write(tmp_path / "d.txt", "some text\n")
    msg = usage_error(p, needs_labels=True)
    assert msg.startswith(f"{p}: plain text has no labels")
    assert "CSV, TSV or JSONL" in msg


def test_no_default_text_column_lists_real_columns(tmp_path):
    p = write(tmp_path / "d.csv", "body,label\nx,1\n")
    msg = usage_error(p, needs_labels=True)
    assert msg == (f"{p}: cannot find a text column (tried sentence, text, content, review, tweet); "
                   "columns are: body, label; choose one with --text-column")


def test_no_default_label_column_lists_real_columns(tmp_path):
    p = write(tmp_path / "d.csv", "text,stars\nx,1\n")
    msg = usage_error(p, needs_labels=True)
    assert msg == (f"{p}: cannot find a label column (tried label, labels, sentiment, class); "
                   "columns are: text, stars; choose one with --label-column")


def test_wrong_explicit_text_column(tmp_path):
    p = write(tmp_path / "d.csv", "sentiment,confidence,text\nneg,1,x\n")
    msg = usage_error(p, needs_labels=True, text_column="tweet_text")
    assert msg == f"{p}: no text column 'tweet_text'; columns are: sentiment, confidence, text"


def test_wrong_explicit_label_column(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "x", "y": 1}\n')
    msg = usage_error(p, needs_labels=True, label_column="label ")
    assert msg == f"{p}: no label column 'label '; columns are: text, y"


def test_row_with_empty_label(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,pos\nb,   \nc,neg\n")
    assert usage_error(p, needs_labels=True) == f"{p}: row 2 has no value in label column 'label'"


def test_row_with_missing_label_field(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\na,pos\nb\n")
    assert usage_error(p, needs_labels=True) == f"{p}: row 2 has no value in label column 'label'"


def test_jsonl_null_label(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": null}\n')
    assert usage_error(p, needs_labels=True) == f"{p}: row 1 has no value in label column 'label'"


def test_all_text_blank(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\n ,a\n,b\n")
    assert usage_error(p, needs_labels=True) == f"{p}: no non-empty text in column 'text'"


def test_invalid_json_line_names_line_number(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": "b"}\n{oops\n')
    msg = usage_error(p, needs_labels=True)
    assert msg.startswith(f"{p}:2: not valid JSON lines (")


def test_json_line_that_is_not_an_object(tmp_path):
    p = write(tmp_path / "d.jsonl", '{"text": "a", "label": "b"}\n[1, 2]\n')
    assert usage_error(p, needs_labels=True) == f"{p}:2: each JSON line must be an object"


# --- bytes that are not UTF-8 --------------------------------------------------------

def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    p = write(tmp_path / "d.csv", b"text,label\ncaf\xe9 \xff\xfe ok,pos\nplain,neg\n")
    got = read_examples(p, needs_labels=True)
    assert got == [Example("caf\ufffd \ufffd\ufffd ok", "pos"), Example("plain", "neg")]


def test_invalid_utf8_in_plain_text(tmp_path):
    p = write(tmp_path / "d.txt", b"a\x80b\n")
    assert read_examples(p, needs_labels=False) == [Example("a\ufffdb")]


def test_real_tweets_file(shared_data):
    """The shared tweets: 38,158 rows, invalid bytes replaced, labels as written."""
    path = shared_data / "twitter_sentiment" / "tweets.csv"
    examples = read_examples(path, needs_labels=True)
    assert len(examples) == 38158
    counts = {lab: sum(e.label == lab for e in examples) for lab in ("negative", "neutral", "positive")}
    assert counts == {"negative": 16186, "neutral": 15018, "positive": 6954}
    assert examples[0].text.startswith("I just don't trust my life in google's hands")
    assert "\ufffd" in examples[0].text  # an invalid byte, replaced
    ids = map_labels(examples, ID2LABEL, str(path))
    assert ids[:1] == [0] and sorted(set(ids)) == [0, 1, 2]


# --- bugs: line splitting and BOM ------------------------------------------------------

def test_csv_quoted_field_keeps_its_line_break(tmp_path):
    p = write(tmp_path / "d.csv", 'text,label\n"@VirginAmerica\rwhere is my bag",neg\n"one\ntwo",pos\n')
    expected = [r["text"] for r in csv.DictReader(io.StringIO(p.read_bytes().decode(), newline=""))]
    assert expected == ["@VirginAmerica\rwhere is my bag", "one\ntwo"]
    got = [e.text.replace("\r", "\n") for e in read_examples(p, needs_labels=True)]
    # (a fix may keep "\r" or normalise it to "\n"; today the break is lost: "...Americawhere...")
    assert got == [t.replace("\r", "\n") for t in expected]


def test_csv_unicode_line_separator_inside_field(tmp_path):
    p = write(tmp_path / "d.csv", "text,label\nhello\u2028world,pos\nbye\x0cnow,neg\n")
    got = read_examples(p, needs_labels=True)  # raises "row 1 has no value in label column"
    assert got == [Example("hello\u2028world", "pos"), Example("bye\x0cnow", "neg")]


def test_jsonl_raw_line_separator_inside_string(tmp_path):
    line = json.dumps({"text": "a\u2028b\x85c", "label": "pos"}, ensure_ascii=False)
    p = write(tmp_path / "d.jsonl", line + "\n")
    assert read_examples(p, needs_labels=True) == [Example("a\u2028b\x85c", "pos")]


def test_csv_with_utf8_bom(tmp_path):
    p = write(tmp_path / "d.csv", "\ufefftext,label\nhello,pos\n".encode("utf-8"))
    assert read_examples(p, needs_labels=True) == [Example("hello", "pos")]


# --- map_labels ------------------------------------------------------------------------

def test_map_labels_by_name_case_insensitive():
    exs = [Example("a", "Negative"), Example("b", "POSITIVE"), Example("c", "neutral")]
    assert map_labels(exs, ID2LABEL, "d.csv") == [0, 2, 1]


def test_map_labels_by_integer_id():
    exs = [Example("a", "2"), Example("b", "0"), Example("c", "1")]
    assert map_labels(exs, ID2LABEL, "d.csv") == [2, 0, 1]


def test_map_labels_name_takes_priority_over_id():
    # a model whose label *names* are digits: "1" means the name "1" (id 0), not id 1
    assert map_labels([Example("a", "1"), Example("b", "0")], {0: "1", 1: "0"}, "d") == [0, 1]


def test_map_labels_unknown_labels_listed_with_model_labels():
    exs = [Example("a", "positive"), Example("b", "joy"), Example("c", "7"), Example("d", "joy"),
           Example("e", "-1")]
    with pytest.raises(UsageError) as info:
        map_labels(exs, ID2LABEL, "tweets.csv")
    assert info.value.exit_code == 2
    assert str(info.value) == ("tweets.csv: labels the model does not have: -1, 7, joy; "
                               "the model's labels: 0=negative, 1=neutral, 2=positive")


def test_map_labels_shows_at_most_ten_unknown():
    exs = [Example("t", f"x{i:02d}") for i in range(15)]
    with pytest.raises(UsageError) as info:
        map_labels(exs, {0: "neg", 1: "pos"}, "f")
    assert "x09" in str(info.value) and "x10" not in str(info.value)


@pytest.mark.parametrize("label", ["--1", "\u00b2"])
def test_map_labels_odd_numeric_label_is_a_usage_error(label):
    with pytest.raises(UsageError, match="labels the model does not have"):
        map_labels([Example("a", label)], {0: "neg", 1: "pos"}, "f")


# --- oversized and malformed tables (issue 19) ------------------------------------------

@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_field_of_5_mb_is_read(tmp_path, suffix, sep):
    """csv's default limit (128 KiB) made a long document a library error naming neither
    file nor line; a field that fits in memory is data, and the process-wide limit is put back."""
    big = "word " * 1_000_000  # 5 MB in one cell
    cell = f'"{big}"' if suffix == ".csv" else big  # a TSV has no quoting (GLUE)
    p = write(tmp_path / f"d{suffix}", f"text{sep}label\nshort{sep}positive\n{cell}{sep}negative\n")
    before = csv.field_size_limit()
    examples = read_examples(p, needs_labels=True)
    assert [len(e.text) for e in examples] == [5, len(big.strip())]
    assert examples[1].label == "negative"
    assert csv.field_size_limit() == before


def test_csv_error_names_file_and_line(tmp_path, monkeypatch):
    """Any csv.Error left (here the field limit, forced low) is a UsageError naming file and line."""
    from edgeify.calibration import readers

    # (raising=False: before the fix there was no such function, and csv's own error escaped)
    monkeypatch.setattr(readers, "_lift_field_limit", lambda: csv.field_size_limit(1000), raising=False)
    before = csv.field_size_limit()
    p = write(tmp_path / "d.csv", "text,label\nok,positive\nfine,negative\n" + "x" * 200_000 + ",positive\n")
    msg = usage_error(p, needs_labels=True)
    assert msg.startswith(f"{p}:4: not a valid CSV file (field larger than field limit (1000))"), msg
    assert "\n" not in msg
    assert csv.field_size_limit() == before


# --- TSV without quoting, and files that are not text (issue 20) ----------------------

def test_tsv_text_starting_with_a_quote_stays_one_row(tmp_path):
    """GLUE-style TSV has no quoting: with csv's default quote handling, 60 rows whose text
    starts with `"` became 30 merged examples carrying the wrong labels, silently."""
    rows = [(f'"{"great" if i % 2 else "awful"} film {i}, said the critic', str(i % 2)) for i in range(60)]
    p = write(tmp_path / "dev.tsv", "sentence\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows))
    assert read_examples(p, needs_labels=True) == [Example(t, lab) for t, lab in rows]


def test_tsv_quotes_inside_and_around_are_kept(tmp_path):
    p = write(tmp_path / "d.tsv", 'sentence\tlabel\n"a whole quote"\t1\nsays "hi" twice\t0\n')
    assert read_examples(p, needs_labels=True) == [Example('"a whole quote"', "1"), Example('says "hi" twice', "0")]


def _zip_bytes() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", "<sheet>" + "x" * 2000 + "</sheet>")
    return buf.getvalue()


@pytest.mark.parametrize("name, content, reason", [
    ("d.csv", _zip_bytes(), "it is a zip archive"),
    ("d.csv", b"PAR1\x15\x04\x15\x10\x15\x14L\x15\x02" + bytes(range(256)) * 4 + b"PAR1", "it is a Parquet file"),
    ("d.tsv", b"sentence\tlabel\n" + bytes(range(256)) * 64, "it holds NUL bytes"),
    ("d.txt", bytes(range(1, 9)) * 500 + b"\n", "control bytes or not UTF-8"),
    ("d.csv", "text,label\nhello,pos\n".encode("utf-16-le"), "UTF-16 without a byte-order mark"),
])
def test_binary_junk_is_refused_without_echoing_it(tmp_path, name, content, reason):
    p = write(tmp_path / name, content)
    for needs_labels in ((False,) if name.endswith(".txt") else (True, False)):
        msg = usage_error(p, needs_labels=needs_labels)
        assert msg.startswith(f"{p}: not a text data file ("), msg
        assert reason in msg and "give a UTF-8 CSV, TSV, JSONL or text file" in msg
        assert msg.isprintable(), repr(msg)  # no control byte reaches the terminal


def test_a_few_control_characters_are_still_text(tmp_path):
    p = write(tmp_path / "d.txt", "page one\x0cpage two\n" + "line \x1b[0m\n" * 3)
    assert len(read_examples(p, needs_labels=False)) == 5  # (a form feed ends a line, as in str.splitlines)


def test_utf16_with_byte_order_mark_is_read(tmp_path):
    """Excel's "Unicode text" export: UTF-16 with a BOM, tab-separated."""
    p = write(tmp_path / "d.tsv", "\ufeffsentence\tlabel\ncafé\t1\n".encode("utf-16-le"))
    assert read_examples(p, needs_labels=True) == [Example("café", "1")]


def test_column_names_in_messages_are_escaped(tmp_path):
    p = write(tmp_path / "d.csv", "bo\x1bdy,label\nx,1\n")
    msg = usage_error(p, needs_labels=True)
    assert "columns are: bo\\x1bdy, label" in msg and msg.isprintable()
