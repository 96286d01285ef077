"""Nothing lost, nothing deleted, nothing half-built: --force, output paths, stale staging
directories of killed runs, signals and file modes (issue 19)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeify import staging
from edgeify.cli import main
from edgeify.errors import UsageError
from edgeify.config import RunConfig
from tests.test_cli import FAST, _no_leftovers


def _config(out, force=False) -> RunConfig:
    return RunConfig(model="electra", out_dir=str(out), force=force)


def _staged_output(out: Path) -> None:
    """An output written the way a run writes one."""
    with staging.Staging(staging.check_out_dir(_config(out, force=out.exists()), log_fn=lambda *_: None)) as tmp:
        (tmp / "report.json").write_text("{}")


def test_force_leaves_a_users_directory_alone(tmp_path, capsys):
    """Defect 1: `--force` deleted a folder holding a user's thesis."""
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    t0 = time.perf_counter()
    assert main(["electra", "-o", str(folder), "--force", *FAST]) == 2
    assert time.perf_counter() - t0 < 5
    err = capsys.readouterr().err
    assert str(folder) in err and "neither" in err and "Traceback" not in err
    assert (folder / "thesis.tex").read_text() == "years of work"
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]


def test_force_replaces_an_edgeify_output_or_an_empty_dir(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    _staged_output(out)  # an empty directory may be replaced
    assert (out / staging.MARKER).is_file()
    (out / "stale-artifact.onnx").write_text("from the last run")
    _staged_output(out)  # and an edgeify output, wholesale
    assert sorted(p.name for p in out.iterdir()) == sorted([staging.MARKER, "report.json"])
    with pytest.raises(UsageError, match="already exists; use --force"):
        staging.check_out_dir(_config(out), log_fn=lambda *_: None)


def test_output_dot_with_force_in_an_empty_dir(tmp_path, starter_dir, labelled_csv, monkeypatch, capsys):
    """Defect 1: `-o . --force` ran to the end, then failed at the rename (empty name)."""
    starter_dir("electra")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    inode = here.stat().st_ino
    assert main(["electra", "--data", str(labelled_csv), "-o", ".", "--force", *FAST]) == 0, capsys.readouterr().err
    assert (here / "report.json").is_file() and (here / "report.md").is_file()
    assert here.stat().st_ino == inode  # the user's current directory is the same directory
    assert os.getcwd() == str(here)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert not [p.name for p in here.iterdir() if p.name.startswith(staging.INSIDE_PREFIXES)]


@pytest.mark.parametrize("out", ["/proc/edgeify-x", "afile/sub"])
def test_unwritable_output_fails_before_any_model_is_loaded(tmp_path, monkeypatch, capsys, out):
    """Defect 3: the output path was checked only after a starter build or a download."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file")
    # an empty cache: reaching the model would start building a starter (a minute)
    monkeypatch.setenv("EDGEIFY_CACHE", str(tmp_path / "empty-cache"))
    t0 = time.perf_counter()
    assert main(["electra", "-o", out, *FAST]) == 2
    assert time.perf_counter() - t0 < 5
    captured = capsys.readouterr()
    assert "loading model" not in captured.out and "STARTER" not in captured.out
    assert out.split("/")[-2] in captured.err and "Traceback" not in captured.err
    assert not (tmp_path / "empty-cache").exists()


_HOLD_STAGING = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from edgeify import staging
    s = staging.Staging(Path(sys.argv[1]))
    tmp = s.__enter__()
    (tmp / "model.onnx").write_bytes(b"x" * 3_000_000)
    print("staged", flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "replacing-an-output"])
def test_a_killed_runs_staging_dir_is_cleaned_by_the_next_run(tmp_path, existing):
    """Defect 2: runs killed hard (SIGKILL, the OOM killer) left gigabytes of hidden staging."""
    out = tmp_path / "o"
    if existing:
        _staged_output(out)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_STAGING, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "staged"
        # while its run lives, another run must neither delete its work nor write over it
        with pytest.raises(UsageError, match="another edgeify run is writing"):
            staging.check_out_dir(_config(out, force=True), log_fn=lambda *_: None)
    finally:
        holder.kill()
        holder.wait()
    logged = []
    staging.check_out_dir(_config(out, force=True), log_fn=logged.append)
    leftovers = [p for p in [*tmp_path.iterdir(), *(out.iterdir() if out.exists() else [])]
                 if "partial" in p.name]
    assert leftovers == [] and len(logged) == 1, (leftovers, logged)
    assert "removed" in logged[0] and "2.9 MB" in logged[0] and "killed" in logged[0]


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_a_run_like_ctrl_c(tmp_path, starter_dir, labelled_csv, signum):
    """Defect 2: SIGTERM/SIGHUP (kill, timeout, docker stop, a closed SSH session) left a
    hidden staging directory and printed nothing."""
    starter_dir("electra")
    proc = subprocess.Popen([sys.executable, "-m", "edgeify.cli", "electra", "--int8", "--data",
                             str(labelled_csv), "-o", str(tmp_path / "o"), *FAST],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "export fp32" in line:
            proc.send_signal(signum)
            break
    _, err = proc.communicate(timeout=120)
    assert any("export fp32" in s for s in seen), seen
    assert proc.returncode == 128 + signum, (proc.returncode, err[-500:])
    assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
    _no_leftovers(tmp_path, "o")


def test_written_files_get_the_umask_and_no_third_party_log_noise(tmp_path, starter_dir, labelled_csv):
    """Defects 5 and 8: the output root was 0700 and model.fp32.onnx, every .tflite and
    pareto.png 0600 (temp files renamed into place); C++ loggers of torch and TensorFlow
    printed `W1201 ...` / `I0000 ...` lines without --debug (and NNCF its INFO tables,
    TFLite `INFO: Created TensorFlow Lite XNNPACK delegate`)."""
    starter_dir("electra")
    out = tmp_path / "o"
    proc = subprocess.run([sys.executable, "-m", "edgeify.cli", "electra", "--int8", "--formats", "all",
                           "--data", str(labelled_csv), "-o", str(out), *FAST],
                          capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: os.umask(0o027))  # not the usual 022: 0700/0600 differ from it
    assert proc.returncode == 0, proc.stderr[-2000:]
    modes = _modes(out)
    assert {"onnx/model.fp32.onnx", "pareto.png"} <= set(modes) and any(k.endswith(".tflite") for k in modes)
    wrong = {k: oct(m) for k, m in modes.items() if m != (0o750 if (out / k).is_dir() else 0o640)}
    assert wrong == {}, wrong
    import re

    noise = [line for line in (proc.stdout + proc.stderr).splitlines()
             if re.match(r"[IWEF]\d{4} \d\d:\d\d", line) or line.startswith(("INFO:", "WARNING:nncf"))
             or "oneDNN custom operations" in line]
    assert noise == [], noise
    # litert-torch's per-step [START]/[DONE] lines and ai-edge-quantizer's size report are
    # not edgeify's output (they come back with --debug)
    assert "[4/5] tflite" in proc.stdout
    assert "[START]" not in proc.stdout and "LiteRT-Torch Convert" not in proc.stdout
    assert "Original model size" not in proc.stdout and "Quantization Ratio" not in proc.stdout
