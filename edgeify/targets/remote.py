"""On-device benchmarking over SSH: time an artifact on a board reached as user@host[:port].

A Raspberry Pi target cannot be timed from this host (targets/__init__.py). With the board
at hand it can: the artifact, its weight files, the inputs, device_runner.py and contract.py are copied
to a fresh temp dir on the device, run there with the device's own Python (which needs
only numpy and the runtime, not edgeify), and the one JSON line it prints is the result.
The temp dir is removed whatever happens, and a runner the host gave up on is stopped.

The system's ssh/scp do the work (keys only: BatchMode, never a password prompt), so the
user's ~/.ssh/config, agent and jump hosts apply as they do for any other ssh command.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeify.errors import EdgeifyError, UsageError
from edgeify.runtimes import formats

RUNNER = Path(__file__).with_name("device_runner.py")
CONTRACT = Path(__file__).parents[1] / "contract.py"  # device_runner.py imports it from its own dir
FORM = "user@host[:port], e.g. pi@raspberrypi.local or pi@192.168.1.20:2222 (IPv6: pi@[fe80::1]:22)"
MIN_PYTHON = (3, 8)  # device_runner.py uses importlib.metadata
_NO_PYTHON, _OLD_PYTHON = 97, 98  # exit codes of the first remote command
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?")
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.%A-Za-z]*")


class RemoteError(EdgeifyError):
    """The device could not be reached or logged into, or could not run the artifact."""


@dataclass(frozen=True)
class Device:
    """A device reached over SSH with keys. `python` is the device's Python (a path there;
    `~/` means its home); `known_hosts` a known_hosts file to use instead of the user's
    (unknown hosts are added to it, changed keys refused); `timeout_s` bounds a whole run."""

    user: str
    host: str
    port: int = 22
    python: str = "python3"
    key: str | None = None
    known_hosts: str | None = None
    connect_timeout_s: float = 10.0
    timeout_s: float = 600.0

    def __post_init__(self):
        if not _USER.fullmatch(self.user or ""):
            raise UsageError(f"bad device user {self.user!r}: letters, digits, '.', '_', '-'; expected {FORM}")
        if not _HOST.fullmatch(self.host or ""):
            raise UsageError(f"bad device host {self.host!r}: a host name or IP address; expected {FORM}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 < self.port < 65536:
            raise UsageError(f"bad device port {self.port!r}: a number from 1 to 65535; expected {FORM}")
        if not self.python.strip() or "\n" in self.python:
            raise UsageError(f"bad device python {self.python!r}: the path of the device's Python, e.g. python3")
        for name in ("connect_timeout_s", "timeout_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
                raise UsageError(f"bad device {name} {value!r}: a positive number of seconds")
        if self.key is not None and not Path(self.key).expanduser().is_file():
            raise UsageError(f"device key {self.key!r} is not a file (the private key to log in with)")

    @classmethod
    def parse(cls, spec: str, **options) -> "Device":
        """`user@host[:port]` plus the other fields as keywords (python=, key=, ...)."""
        m = re.fullmatch(r"([^@\s]*)@(\[[^\]\s]*\]|[^:@\s\[\]]*)(?::(\S*))?", (spec or "").strip())
        if not m:
            raise UsageError(f"bad device {spec!r}: expected {FORM}")
        user, host, port = m.group(1), m.group(2).strip("[]"), m.group(3)
        if port is not None and not port.isdigit():
            raise UsageError(f"bad device {spec!r}: port {port!r} is not a number from 1 to 65535; expected {FORM}")
        if not user or not host:
            raise UsageError(f"bad device {spec!r}: {'user' if not user else 'host'} is empty; expected {FORM}")
        return cls(user, host, int(port) if port is not None else 22, **options)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}"

    def ssh_options(self) -> list[str]:
        """Options shared by ssh and scp: keys only, a bounded connect, first-use host keys
        accepted (changed ones refused), and keep-alives so a dead link is noticed."""
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout_s))}",
                "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]
        if self.known_hosts:
            opts += ["-o", f'UserKnownHostsFile="{Path(self.known_hosts).expanduser()}"']
        if self.key:
            opts += ["-i", str(Path(self.key).expanduser()), "-o", "IdentitiesOnly=yes"]
        return opts


def _remote_suffixes() -> list[str]:
    """The suffixes of the formats the shipped device runner opens (its own table)."""
    from edgeify.targets.device_runner import OPENERS

    return [s for s in formats.suffixes() if s in OPENERS]


def companion_files(artifact: Path) -> list[Path]:
    """The artifact and the files it loads with it (its format's companions: an ONNX file's
    external data, an OpenVINO IR's .bin); refuses what the device runner cannot time."""
    from edgeify.runtimes import is_decoder

    artifact = Path(artifact)
    remote = _remote_suffixes()
    accepted = ", ".join(remote)
    if not artifact.is_file():
        raise UsageError(f"artifact not found: {artifact}" if not artifact.exists()
                         else f"{artifact}: remote timing takes one file ({accepted}), not a directory")
    if artifact.suffix.lower() not in remote:
        raise UsageError(f"{artifact}: remote timing takes {accepted} files, not {artifact.suffix or 'this'}")
    if is_decoder(artifact):
        raise UsageError(f"{artifact}: a cached decoder (key/value cache inputs or state); timing one on "
                         "a remote device is not supported yet: time it locally, or time a logits-only export")
    return [artifact, *formats.of(artifact).companions(artifact)]


def _precision(artifact: Path) -> str:
    """What the local runners report as precision, read here from the file (the device
    runner reports OpenVINO's, which only the compiled model knows)."""
    read = formats.of(artifact).file_precision
    try:
        return read(artifact) if read is not None else "unknown"
    except ImportError:  # reading a .tflite needs ai-edge-litert's schema
        return "unknown"


def measure_remote(device: Device, artifact: str | Path, feeds: dict[str, np.ndarray], threads: int, *,
                   warmup: int = 10, min_runs: int = 30, max_runs: int = 300, max_seconds: float = 6.0,
                   eval_inputs: dict[str, np.ndarray] | None = None, labels: np.ndarray | None = None,
                   task=None) -> dict:
    """Latency (and with `eval_inputs` the metric) of `artifact` measured on `device`: the
    keys of targets.local.measure plus `device`, and `metric` {name, value, n}. `task`: a
    tasks.Task or its name, needed with `eval_inputs`."""
    from edgeify import tasks
    from edgeify.runtimes.openvino_runner import SHAPES_ENV

    artifact = Path(artifact)
    files = companion_files(artifact)
    if eval_inputs is not None:
        try:
            task = tasks.get(task)
        except KeyError as e:
            raise UsageError(f"evaluation on a device: {e.args[0]}") from None
        if task.labelled and labels is None:
            raise UsageError("evaluating a classifier on a device needs labels")
    shapes = os.environ.get(SHAPES_ENV, "").strip().lower()  # honoured as the local runner does
    if shapes not in ("", "static", "dynamic"):
        raise UsageError(f"{SHAPES_ENV}={shapes!r}; accepted: static, dynamic")
    spec = dict(artifact=artifact.name, inputs="inputs.npz", threads=int(threads), warmup=warmup,
                min_runs=min_runs, max_runs=max_runs, max_seconds=max_seconds,
                task=task.name if eval_inputs is not None else None, openvino_shapes=shapes, exit_on_stdin_eof=True)
    with tempfile.TemporaryDirectory(prefix="edgeify-remote-") as tmp:
        arrays = {f"feed.{k}": np.asarray(v) for k, v in feeds.items()}
        arrays.update({f"eval.{k}": np.asarray(v) for k, v in (eval_inputs or {}).items()})
        if eval_inputs is not None and labels is not None:
            arrays["labels"] = np.asarray(labels, dtype=np.int64)
        np.savez(Path(tmp) / "inputs.npz", **arrays)
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        session = _Session(device)
        try:
            session.make_dir()
            session.copy([*files, RUNNER, CONTRACT, Path(tmp) / "inputs.npz", Path(tmp) / "spec.json"])
            result = session.run(int(threads))
        except subprocess.TimeoutExpired:
            done = "the runner was stopped and its temp dir removed" if session.running else "its temp dir was removed"
            left = session.cleanup()
            raise RemoteError(f"{device}: timed out after {device.timeout_s:g}s (the device's timeout_s) while "
                              f"{session.step}; {left or done}") from None
        except BaseException as e:
            left = session.cleanup()
            if left and isinstance(e, EdgeifyError):
                raise type(e)(f"{e}; {left}") from None
            raise
        left = session.cleanup()
        if left:
            raise RemoteError(f"{device}: {left}")
    if result.get("precision") is None:
        result["precision"] = _precision(artifact)
    result["device"] = str(device)
    return result


class _Session:
    """One measurement's ssh/scp calls against one deadline, and what to clean up."""

    def __init__(self, device: Device):
        self.device = device
        self.deadline = time.monotonic() + device.timeout_s
        self.token = secrets.token_hex(4)
        self.dir: str | None = None
        self.step = "connecting and making a temp dir"
        self.started = False    # the make_dir call ran: a temp dir may exist
        self.running = False    # the runner may still be running on the device

    # --- plumbing

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired("ssh", self.device.timeout_s)
        return left

    def _ssh(self, command: str, timeout: float, stdin=subprocess.DEVNULL) -> subprocess.CompletedProcess:
        argv = ["ssh", *self.device.ssh_options(), "-T", "-p", str(self.device.port), "--",
                f"{self.device.user}@{self.device.host}", command]
        return subprocess.run(argv, stdin=stdin, capture_output=True, text=True, errors="replace",
                              timeout=timeout)

    def _login_error(self, proc: subprocess.CompletedProcess) -> RemoteError | None:
        """ssh's own failures (exit 255): unreachable, login refused, or a changed host key."""
        if proc.returncode != 255:
            return None
        why = _connection_problem(proc.stderr, self.device) or "ssh failed (connection lost, or a refused login)"
        return RemoteError(f"{self.device}: {why} (ssh: {(_tail(proc.stderr) or 'no message')[:200]})")

    # --- the steps

    def make_dir(self) -> None:
        """Check the device's Python and make the temp dir, in one connection."""
        py = _sh_path(self.device.python)
        version = ", ".join(map(str, MIN_PYTHON))
        command = (f"command -v {py} >/dev/null 2>&1 || exit {_NO_PYTHON}; "
                   f"{py} -c 'import sys; sys.exit(sys.version_info < ({version}))' || exit {_OLD_PYTHON}; "
                   f'mktemp -d "${{TMPDIR:-/tmp}}/edgeify-{self.token}.XXXXXX"')
        self.started = True
        proc = self._ssh(command, self._left())
        error = self._login_error(proc)
        if error or proc.returncode in (_NO_PYTHON, _OLD_PYTHON):
            self.started = False  # no login, or it ended before mktemp: nothing to clean up
        if error:
            raise error
        if proc.returncode == _NO_PYTHON:
            raise RemoteError(f"{self.device}: no Python at {self.device.python!r} on the device; give the "
                              "device's Python path (python=..., e.g. /usr/bin/python3 or a venv's bin/python)")
        if proc.returncode == _OLD_PYTHON:
            raise RemoteError(f"{self.device}: {self.device.python!r} on the device is not Python "
                              f"{'.'.join(map(str, MIN_PYTHON))} or newer ({_tail(proc.stderr) or 'version check failed'})")
        out = _tail(proc.stdout)
        if proc.returncode != 0 or not re.fullmatch(rf"/[^\s'\"\\]*/edgeify-{self.token}\.[A-Za-z0-9]+", out):
            raise RemoteError(f"{self.device}: cannot make a temp dir with mktemp -d (exit {proc.returncode}: "
                              f"{_tail(proc.stderr) or out or 'no output'})")
        self.dir = out

    def copy(self, files: list[Path]) -> None:
        mb = sum(f.stat().st_size for f in files) / 2**20
        self.step = f"copying {len(files)} files ({mb:.1f} MB)"
        host = f"[{self.device.host}]" if ":" in self.device.host else self.device.host
        argv = ["scp", "-q", *self.device.ssh_options(), "-P", str(self.device.port), "--",
                *map(str, files), f"{self.device.user}@{host}:{self.dir}/"]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=self._left())
        if proc.returncode != 0:
            why = _connection_problem(proc.stderr, self.device) or f"copying to {self.dir} failed"
            raise RemoteError(f"{self.device}: {why} (scp: {(_tail(proc.stderr) or f'exit {proc.returncode}')[:200]})")

    def run(self, threads: int) -> dict:
        """Run the device runner. Its stdin is a pipe this process holds open: when the
        host stops waiting, ssh dies, the pipe closes and the runner exits by itself."""
        self.step = "running the benchmark"
        py = _sh_path(self.device.python)
        command = (f"cd {shlex.quote(self.dir)} && echo $$ > pid && "
                   f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} && "
                   f"exec {py} device_runner.py spec.json")
        read_end, write_end = os.pipe()
        self.running = True
        try:
            proc = self._ssh(command, self._left(), stdin=read_end)
        finally:
            os.close(read_end)
            os.close(write_end)
        self.running = False
        error = self._login_error(proc)
        if error and not proc.stderr.strip():  # ssh says nothing when the remote command dies of a signal
            error = RemoteError(f"{self.device}: the device runner died without a result (killed by a signal: "
                                "out of memory?)")
        line = _tail(proc.stdout)
        try:
            result = json.loads(line)
            if not isinstance(result, dict):
                raise ValueError(line)
        except ValueError:
            if error:
                raise error from None
            how = f"exit {proc.returncode}" if proc.returncode < 128 else f"exit {proc.returncode}, killed by signal {proc.returncode - 128}"
            raise RemoteError(f"{self.device}: the device runner printed no JSON result ({how}; "
                              f"stdout: {line[:120]!r}; stderr: {_tail(proc.stderr)[:200] or 'empty'})") from None
        if "error" in result:
            raise self._runner_error(result)
        return result

    def _runner_error(self, result: dict) -> RemoteError:
        python = result.get("python_path") or self.device.python
        kind, message = result.get("error"), result.get("message", "no message")
        if kind == "no_module":
            return RemoteError(f"{self.device}: the device's Python ({python}) has no numpy ({message}); "
                               "install it there: pip install numpy (or apt install python3-numpy)")
        if kind == "no_runtime":
            fmt = result.get("format", "?")
            install = formats.get(fmt).install if fmt in formats.names() else "the runtime"
            return RemoteError(f"{self.device}: the device's Python ({python}) has no {fmt} runtime: tried "
                               f"{', '.join(result.get('tried', []))} ({message}); install it there: {install}")
        return RemoteError(f"{self.device}: the artifact failed on the device ({kind}): {message}")

    def cleanup(self) -> str | None:
        """Stop a runner still going and remove the temp dir; None when done, else what was
        left behind. Runs on its own short timeout: the run's may be spent."""
        if not self.started:
            return None
        if self.dir is None:  # make_dir did not finish: its dir (if any) carries our token
            target = f'"${{TMPDIR:-/tmp}}"/edgeify-{self.token}.*'
            command = f"rm -rf {target}"
        else:
            target = shlex.quote(self.dir)
            stop = (f'[ -f {target}/pid ] && kill "$(cat {target}/pid)" 2>/dev/null; ' if self.running else "")
            command = f"{stop}rm -rf {target}"
        try:
            proc = self._ssh(command, self.device.connect_timeout_s + 15)
        except subprocess.TimeoutExpired:
            return f"could not remove its temp dir {self.dir or target} on the device (cleanup timed out)"
        if proc.returncode != 0:
            return f"could not remove its temp dir {self.dir or target} on the device ({_tail(proc.stderr) or proc.returncode})"
        self.started = False
        return None


def _connection_problem(stderr: str, device: Device) -> str | None:
    """Which of ssh's connection failures its stderr shows, in words, or None."""
    low = (stderr or "").lower()
    if "permission denied" in low or "too many authentication failures" in low:
        key = f"key {device.key}" if device.key else "the default keys/agent"
        return f"authentication failed: login as {device.user!r} with {key} was refused (keys only, no passwords)"
    if "host key verification failed" in low or "identification has changed" in low:
        return "its host key does not match the known_hosts entry (a different device, or reinstalled?)"
    if "could not resolve hostname" in low or "name or service not known" in low:
        return f"unreachable: host name {device.host!r} does not resolve"
    if "connection refused" in low:
        return f"unreachable: nothing accepts connections on port {device.port} (is sshd running?)"
    if "timed out" in low:
        return f"unreachable: no answer within {device.connect_timeout_s:g}s"
    if "no route to host" in low or "network is unreachable" in low:
        return "unreachable: no route to the host"
    return None


def _sh_path(path: str) -> str:
    """A device path for the remote shell: quoted, with a leading ~/ kept as $HOME."""
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
