"""`edgeify MODEL [options]` and its subcommands: targets, eval, bench."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading

import click

from edgeify.errors import EdgeifyError, Terminated

RUN_HELP = """Make MODEL small and fast, export it, and measure it against PyTorch.

MODEL is a family (albert, electra, gpt-neo), a Hugging Face hub id, or a local model
directory. Offline, a family name falls back to a small STARTER model trained here.

\b
Examples:
  edgeify electra --int8
  edgeify ./my-albert --int8 --data tweets.csv --text-column text --label-column sentiment
  edgeify gpt-neo --int8 --data wiki.test.raw --seq-len 128
"""


class _DefaultToRun(click.Group):
    """`edgeify MODEL ...` means `edgeify run MODEL ...`; subcommand names win."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx, formatter):
        formatter.write_usage("edgeify", "MODEL [OPTIONS]  |  edgeify COMMAND [ARGS]...")


def _formats(value: str) -> tuple[str, ...]:
    from edgeify import export

    if value is None:
        return ()  # the target's default
    if value == "all":
        return ("all",)  # every format the target can run
    out = tuple(v.strip() for v in value.split(",") if v.strip())
    bad = [v for v in out if v not in export.formats()]
    if bad or not out:
        raise click.BadParameter(f"{value!r}: accepted formats are {', '.join(export.formats())} or all")
    return out


debug_option = click.option("--debug", is_flag=True, help="Show full tracebacks and debug logs.")


@click.group(cls=_DefaultToRun, help=RUN_HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgeify")
def cli():
    pass


@cli.command("run", help=RUN_HELP)
@click.argument("model")
@click.option("--int8", is_flag=True, help="Also produce int8 artifacts (per format: ONNX dynamic + static QDQ; OpenVINO NNCF int8; TFLite dynamic-range + static int8) and pick the best. GPT-Neo is exported as a cached decoder instead, with weight-only int8 and int4 (plus ONNX dynamic int8, TFLite dynamic int8/int4).")
@click.option("--formats", help="Comma-separated export formats (onnx, openvino, tflite), or 'all' [default: onnx, "
                                 "or the target's own format].")
@click.option("--target", default="host", show_default=True, help="Hardware target (see `edgeify targets`).")
@click.option("--device", help="Also time (and evaluate) each artifact on the device itself over SSH: "
              "user@host[:port], key login. Its results go beside the host's; if it fails, they are kept.")
@click.option("--device-python", default="python3", show_default=True,
              help="The device's Python (with numpy and the runtime; edgeify is not needed there).")
@click.option("--device-key", type=click.Path(dir_okay=False), help="Private key for --device [default: ssh's].")
@click.option("--device-known-hosts", type=click.Path(dir_okay=False),
              help="known_hosts file for --device [default: ssh's; a new device's key is added].")
@click.option("--plan", "plan_only", is_flag=True, help="Print what would be built for --target (formats, "
              "precisions, threads, lengths) and what is refused and why, then stop; loads no weights.")
@click.option("--max-memory-mb", type=click.FloatRange(1), help="Refuse artifacts whose weights plus runtime "
              "need more memory than this [default: the target's memory]. A budget: see --max-latency-ms.")
@click.option("--max-latency-ms", type=click.FloatRange(0, min_open=True), help="Budget: search compression "
              "recipes (as is, --trim-vocab, a shorter --seq-len where the evaluation texts allow it, --prune, "
              "--distill to 1/2, 1/3, 1/4 of the layers or half the width) x formats x precisions, stopping at the "
              "first with an artifact within every budget (latency on the target: measured there, or "
              "estimated; for a causal LM, ms per decoded token, with neither --trim-vocab nor a shorter "
              "length) and skipping recipes a measured run rules out; trains on --train-data, scores on "
              "--eval-data; writes search.md/json and pareto.png beside one run directory per recipe.")
@click.option("--max-size-mb", type=click.FloatRange(0, min_open=True), help="Budget: artifact file size "
              "(see --max-latency-ms).")
@click.option("--min-speedup", type=click.FloatRange(1, min_open=True), help="Budget: at least this many times "
              "faster than PyTorch fp32 eager at --seq-len (a causal LM: per decoded token, with its cache), as "
              "the search's first run times it here (see --max-latency-ms; host only).")
@click.option("--data", help="Data for every set not given on its own: .csv/.tsv/.jsonl (text + label), .txt (LM), "
              "hub:PATH[@CONFIG][:SPLIT], or 'synthetic'. One source is split: --n-calibration rows first, then "
              "--n-eval, then training rows; hub:PATH without a split evaluates its validation split and "
              "calibrates and trains on its train split [default: the model's dataset; starters: synthetic].")
@click.option("--eval-data", help="Evaluation data, on its own (a dev file): a file or hub:... as for --data.")
@click.option("--calibration-data", help="Calibration data, on its own (a train file; labels not needed): "
              "a file or hub:... as for --data.")
@click.option("--train-data", help="Training rows for --distill/--prune/--trim-vocab [default: the "
              "calibration data, after its calibration rows].")
@click.option("--text-column", help="Text column (default: first of sentence, text, content, review, tweet).")
@click.option("--label-column", help="Label column (default: first of label, labels, sentiment, class).")
@click.option("--seq-len", "seq_lens", multiple=True, type=click.IntRange(8, 4096),
              help="Fixed sequence length [default: 128]. Give it again for more lengths: static-shape "
                   "formats (tflite) get one file per length, each evaluated and timed at its length; "
                   "the first is the one every model is compared and selected at.")
@click.option("--n-calibration", default=128, show_default=True, type=click.IntRange(1),
              help="Calibration samples, taken first. With --int8, finding fewer than 32 (and fewer than asked) "
                   "is refused: static quantizers calibrated on a few rows lose points.")
@click.option("--n-eval", type=click.IntRange(1), help="Evaluation samples [default: 1000; LM: 100 windows].")
@click.option("--max-accuracy-drop", type=click.FloatRange(0.0),
              help="Accuracy points (or % perplexity) int8 may lose [default: 1]. When given, ONNX "
                   "and TFLite (dynamic and static) and OpenVINO int8 also build accuracy-controlled files: the layers "
                   "that cost the most on the eval set go back to float until the drop is within it.")
@click.option("-o", "--out", "out_dir", help="Output directory [default: edgeify-out/<model>].")
@click.option("--force", is_flag=True, help="Overwrite an existing output directory.")
@click.option("--bench-seconds", default=6.0, show_default=True, type=click.FloatRange(0.0),
              help="Timing budget per model, split over the rounds (each round: 10 warm-up runs, then at least 30 timed).")
@click.option("--bench-rounds", default=3, show_default=True, type=click.IntRange(1),
              help="Interleaved timing rounds; latency is the median over rounds.")
@click.option("--distill", is_flag=True, help="Distil into a shallower student of the same family "
              "(every k-th layer of the teacher; KD on soft labels + hidden states) before export.")
@click.option("--student-layers", type=click.IntRange(1), help="Student depth for --distill [default: half].")
@click.option("--student-hidden", type=click.IntRange(1), help="Student hidden size for --distill (a multiple "
              "of the head size): keeps the most important heads and hidden dims [default: the teacher's].")
@click.option("--epochs", default=3, show_default=True, type=click.IntRange(1), help="Epochs of --distill.")
@click.option("--prune", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              help="Remove this fraction of the transformer blocks' parameters (heads, FFN neurons, layers; "
              "ranked by measured importance), then recover with one epoch of KD.")
@click.option("--trim-vocab", is_flag=True, help="Keep only the tokens --data needs (identical tokenization "
              "of that data, checked), shrinking the embeddings.")
@click.option("--train-samples", default=10000, show_default=True, type=click.IntRange(1),
              help="Training rows for --distill/--prune (never the evaluation or calibration rows).")
@click.option("--max-length", type=click.IntRange(2), help="Causal LMs: tokens (prompt + generated) the "
              "exported decoders' key/value cache holds [default: 512 for TFLite, which allocates it up "
              "front; the model's position limit for ONNX and OpenVINO].")
@click.option("--eval-context", type=click.IntRange(0), help="Causal LMs: tokens of preceding text each "
              "perplexity window sees, unscored (sliding-window perplexity) [default: --seq-len, cut to "
              "what the model and the decoders' cache hold; 0 scores each window from an empty cache].")
@click.option("--resume", is_flag=True, help="Continue an interrupted --distill/--prune run from its last "
              "epoch checkpoint (kept beside the output directory until the run succeeds); with a budget, "
              "continue an interrupted search in -o, reusing every recipe it finished.")
@debug_option
def run_cmd(model, int8, formats, target, data, eval_data, calibration_data, train_data, text_column, label_column,
            seq_lens, n_calibration, n_eval, max_accuracy_drop, out_dir, force, bench_seconds, bench_rounds, distill,
            student_layers, student_hidden, epochs, prune, trim_vocab, train_samples, max_length, eval_context, resume, device, device_python,
            device_key, device_known_hosts, plan_only, max_memory_mb, max_latency_ms, max_size_mb, min_speedup, debug):
    from edgeify import compress
    from edgeify.config import RunConfig
    from edgeify.pipeline import run

    if (student_layers or student_hidden) and not distill:
        raise click.UsageError("--student-layers and --student-hidden need --distill")
    stages = ((compress.Distill(student_layers=student_layers, student_hidden=student_hidden, epochs=epochs),)
              if distill else ()) + \
        ((compress.Prune(ratio=prune),) if prune else ()) + ((compress.TrimVocab(),) if trim_vocab else ())

    config = RunConfig(model=model, int8=int8, formats=_formats(formats), target=target, data=data,
                       eval_data=eval_data, calibration_data=calibration_data, train_data=train_data,
                       text_column=text_column, label_column=label_column,
                       seq_len=(seq_lens or (128,))[0], extra_seq_lens=tuple(seq_lens[1:]),
                       n_calibration=n_calibration, n_eval=n_eval, out_dir=out_dir, force=force,
                       max_accuracy_drop=max_accuracy_drop, bench_seconds=bench_seconds,
                       bench_rounds=bench_rounds, compress=stages, n_train=train_samples, resume=resume,
                       max_length=max_length, eval_context=eval_context, max_memory_mb=max_memory_mb,
                       device=device, device_python=device_python, device_key=device_key,
                       device_known_hosts=device_known_hosts)
    if plan_only:
        from edgeify.build import plan_only as print_plan

        print_plan(config, log_fn=click.echo)
        return
    if max_latency_ms or max_size_mb or max_memory_mb or min_speedup:
        from edgeify.search import DEFAULT_ACCURACY_DROP, Budgets, search

        budgets = Budgets(max_accuracy_drop=DEFAULT_ACCURACY_DROP if max_accuracy_drop is None else max_accuracy_drop,
                          max_latency_ms=max_latency_ms, max_size_mb=max_size_mb, max_memory_mb=max_memory_mb,
                          min_speedup=min_speedup)
        state = search(config, budgets, run, log_fn=click.echo)
        click.echo(f"\nsearch: {os.path.join(state['output_dir'], 'search.md')}")
        if not state["best"]:  # a failure, with everything found kept
            raise EdgeifyError(f"nothing fits every budget: {state['verdict']}")
        return
    run(config, log_fn=lambda msg: click.echo(msg, err=False))


@cli.command("targets")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@debug_option
def targets_cmd(as_json, debug):
    """List hardware targets."""
    from dataclasses import asdict

    from edgeify import targets

    items = [targets.get(n) for n in targets.names()]
    if as_json:
        click.echo(json.dumps([asdict(t) for t in items], indent=2))
        return
    for t in items:
        click.echo(f"{t.name:10} {t.threads} threads  formats: {','.join(t.formats):12} "
                   f"{'measured' if t.measured else 'estimated'}  {t.description}")


@cli.command("eval")
@click.argument("artifact", type=click.Path())
@click.option("--data", required=True, help="Data file (as for the main command).")
@click.option("--model-dir", help="Directory with the tokenizer and config [default: the run's pytorch/].")
@click.option("--text-column")
@click.option("--label-column")
@click.option("--seq-len", default=128, show_default=True, type=click.IntRange(8, 4096))
@click.option("--n-eval", type=click.IntRange(1), help="Evaluate at most this many samples [default: all].")
@click.option("--eval-context", type=click.IntRange(0), help="Causal LMs: preceding tokens each window "
              "sees, unscored [default: --seq-len, cut to what the artifact holds].")
@click.option("--threads", type=click.IntRange(1), help="Threads [default: the host target's].")
@debug_option
def eval_cmd(artifact, data, model_dir, text_column, label_column, seq_len, n_eval, eval_context, threads, debug):
    """Accuracy (or perplexity) of ARTIFACT on --data."""
    from edgeify.artifact import eval_artifact

    result = eval_artifact(artifact, data, model_dir=model_dir, text_column=text_column,
                           label_column=label_column, seq_len=seq_len, n_eval=n_eval, threads=threads,
                           eval_context=eval_context)
    click.echo(json.dumps(result, indent=2))


@cli.command("bench")
@click.argument("artifact", type=click.Path())
@click.option("--seq-len", default=128, show_default=True, type=click.IntRange(1, 4096))
@click.option("--batch", default=1, show_default=True, type=click.IntRange(1))
@click.option("--target", default="host", show_default=True)
@click.option("--threads", type=click.IntRange(1), help="Threads [default: the target's].")
@click.option("--seconds", default=6.0, show_default=True, type=click.FloatRange(0, min_open=True),
              help="Timing budget.")
@debug_option
def bench_cmd(artifact, seq_len, batch, target, threads, seconds, debug):
    """Latency (p50/p90) and peak memory of ARTIFACT on random token ids."""
    from edgeify.artifact import bench_artifact

    result = bench_artifact(artifact, seq_len=seq_len, batch=batch, target=target,
                            threads=threads, seconds=seconds)
    click.echo(json.dumps(result, indent=2))


@cli.command("generate")
@click.argument("artifact", type=click.Path())
@click.option("--prompt", required=True, help="Text to continue ('-' reads it from stdin).")
@click.option("--max-new-tokens", default=64, show_default=True, type=click.IntRange(1))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0.0),
              help="0 picks the most likely token (greedy); above 0 samples.")
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(0), help="Sample among the k most likely (0: off).")
@click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0.0, 1.0, min_open=True),
              help="Sample among the most likely tokens holding this much probability (1: off).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--stop", multiple=True, help="Stop after this token (one token of text; repeatable) "
              "[default: the tokenizer's end-of-text token].")
@click.option("--ignore-eos", is_flag=True, help="Do not stop at end-of-text: always --max-new-tokens.")
@click.option("--model-dir", help="Directory with the tokenizer [default: the run's pytorch/].")
@click.option("--threads", type=click.IntRange(1), help="Threads [default: the host target's].")
@click.option("--json", "as_json", is_flag=True, help="Print the result and speeds as JSON at the end.")
@debug_option
def generate_cmd(artifact, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop, ignore_eos,
                 model_dir, threads, as_json, debug):
    """Continue --prompt with a cached decoder (ONNX, OpenVINO or TFLite, from a GPT-Neo run;
    a Hugging Face model directory runs PyTorch eager), streaming the tokens."""
    from edgeify.artifact import generate_text

    if prompt == "-":
        prompt = sys.stdin.read()
    result = generate_text(artifact, prompt, dict(max_new_tokens=max_new_tokens, temperature=temperature,
                                                  top_k=top_k, top_p=top_p, seed=seed),
                           model_dir=model_dir, stop=stop, ignore_eos=ignore_eos, threads=threads,
                           write=lambda text: click.echo(text, nl=False))
    click.echo("")
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"[{result['new_tokens']} tokens, stopped by {result['stopped_by']}; prefill "
                   f"{result['prefill_tokens_per_s']:g} tokens/s, decode {result['decode_tokens_per_s']:g} "
                   f"tokens/s; {result['runtime']}, {result['precision']}]", err=True)


# Third-party C++ loggers (TensorFlow/LiteRT via absl, torch's c10, oneDNN notes) print
# `W1201 ...` / `I0000 ... oneDNN custom operations are on` lines a user cannot act on;
# they are set before those libraries load, here and in every child process, unless --debug.
# (Levels hide info and warnings; errors still print.)
# TORCH_LOGS=-all: torch's Python loggers (own handler, `W1201 ... _pytree.py] ...`) at ERROR.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "TORCH_CPP_LOG_LEVEL": "ERROR", "GLOG_minloglevel": "2",
             "TORCH_LOGS": "-all", "TRANSFORMERS_VERBOSITY": "error"}


def _quiet_third_party() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    # NNCF logs INFO tables to stdout through a handler of its own, set up when imported;
    # a filter on its logger outlasts that (its warnings still show)
    logging.getLogger("nncf").addFilter(lambda record: record.levelno >= logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")


def _raise_terminated(signum, frame):
    """SIGTERM/SIGHUP unwind the run like Ctrl-C (every `finally` and cleanup runs, child
    processes started with subprocess.run are killed). A second signal during that
    cleanup is ignored, so the cleanup is not cut short."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


def _echo_err(message: str) -> None:
    try:
        click.echo(message, err=True)
    except OSError:  # SIGHUP: the terminal may be gone
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EDGEIFY_DEBUG") == "1"
    logging.basicConfig(level=logging.DEBUG if debug else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        _quiet_third_party()
    old_handlers = {}
    if threading.current_thread() is threading.main_thread():  # only there can handlers be set
        old_handlers = {sig: signal.signal(sig, _raise_terminated) for sig in (signal.SIGTERM, signal.SIGHUP)
                        if signal.getsignal(sig) is not signal.SIG_IGN}  # nohup's SIGHUP stays ignored
    try:
        cli.main(args=argv, prog_name="edgeify", standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as e:
        signalled = e if isinstance(e, Terminated) else e.__cause__  # click wraps it in Abort
        if isinstance(signalled, Terminated):
            _echo_err(f"edgeify: stopped by {signalled}; the unfinished run left no partial output")
            return signalled.exit_code
        _echo_err("edgeify: interrupted; the unfinished run left no partial output")
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except EdgeifyError as e:
        if debug:
            raise
        _echo_err(f"edgeify: error: {e}")
        return e.exit_code
    except Exception as e:  # noqa: BLE001 - one line for users, traceback with --debug
        if debug:
            raise
        _echo_err(f"edgeify: error: {type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
