"""Where a run's output goes, and how nothing is lost on the way there.

A run writes into a staging directory and moves it into place only at the end, so a
failure, Ctrl-C or SIGTERM leaves no half-built output. The rules that keep a user's files
safe and make that last move unable to fail for a reason we could have checked:

- the output path is resolved first (`-o .` has no name to stage beside) and checked
  before any model is loaded: every existing part of it is a directory we can write in;
- `--force` replaces only an empty directory or one edgeify wrote (its MARKER or an
  edgeify report.json), never a user's folder;
- a new output is staged beside it (`.NAME.partial-*`) and renamed into place; an existing
  one is staged inside itself (`.edgeify-partial-*`) and its entries swapped, so a mount
  point, the current directory or a directory in an unwritable parent can be replaced;
- each staging directory holds a flock()ed LOCK while its run lives. The lock dies with
  the process, however it dies (SIGKILL, the OOM killer), so the next run can tell a stale
  staging directory from a live one and remove it.
- what is moved into place gets the user's umask, as files made with open() would.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from edgeify.errors import EdgeifyError, UsageError

log = logging.getLogger(__name__)

MARKER = ".edgeify-output"  # in every output edgeify writes: --force may replace that directory
LOCK = ".edgeify-lock"      # in every live staging directory, flock()ed by its run
INSIDE_PREFIXES = (".edgeify-partial-", ".edgeify-old-")


def default_out_dir(model: str) -> Path:
    name = Path(model).name if Path(model).expanduser().is_dir() else model.replace("/", "--")
    return Path("edgeify-out") / name


def resolve(out_dir: str | os.PathLike | None, model: str) -> Path:
    """The absolute output path (`.`, `..` and `~` resolved: the staging dir needs a name)."""
    out = Path(out_dir).expanduser() if out_dir else default_out_dir(model)
    return Path(os.path.abspath(out))


def is_edgeify_output(path: Path) -> bool:
    """A directory edgeify wrote: its marker, or a report.json with edgeify's keys (older runs)."""
    if (path / MARKER).is_file():
        return True
    try:
        report = json.loads((path / "report.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(report, dict) and "edgeify_version" in report and "artifacts" in report


def mark(path: Path, what: str = "run") -> None:
    """Write the marker that lets a later --force replace this directory."""
    (path / MARKER).write_text(json.dumps({"written_by": "edgeify", "what": what}) + "\n")
    apply_umask(path / MARKER)


def check_out_dir(config, log_fn: Callable[[str], None] = print) -> Path:
    """The checked output path of a run: safe to replace, writable. Raises UsageError."""
    out = resolve(config.out_dir, config.model)
    clean_stale(out, log_fn)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise UsageError(f"output path {out} exists and is not a directory")
        if not config.force:
            raise UsageError(f"output directory {out} already exists; use --force to overwrite it")
        if not is_edgeify_output(out) and _entries(out):
            raise UsageError(f"--force replaces only an empty directory or one edgeify wrote, and {out} is "
                             f"neither (no {MARKER} or edgeify report.json in it); its files are left alone: "
                             "choose another -o, or empty it yourself")
        _probe_writable(out)
    else:
        _probe_writable(_nearest_existing(out))
    return out


def _entries(path: Path) -> list[Path]:
    """What is in a directory, less edgeify's own dead staging leftovers (already reported)."""
    return [p for p in path.iterdir() if not p.name.startswith(INSIDE_PREFIXES)]


def _nearest_existing(path: Path) -> Path:
    """The deepest existing ancestor, which must be a directory (`-o afile/sub` cannot be)."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"output path {path}: {parent} is a file, not a directory")
    return parent


def _probe_writable(directory: Path) -> None:
    """Make and remove a directory where the run will: the only check that catches every
    reason (permissions, read-only mounts, /proc, a full inode table) before the work."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".edgeify-probe-", dir=directory))
    except OSError as e:
        raise UsageError(f"cannot write the output in {directory}: {e.strerror or e}") from None


# --- stale staging directories --------------------------------------------------------

def clean_stale(out: Path, log_fn: Callable[[str], None]) -> None:
    """Remove staging directories of `out` left by runs that are gone (killed, crashed);
    refuse when another live run is writing the same output."""
    candidates = []
    if out.parent.is_dir():
        candidates += [p for p in out.parent.glob(f".{out.name}.partial-*") if p.is_dir()]
        candidates += [p for p in out.parent.glob(f".{out.name}.old-*") if p.is_dir()]  # older edgeify's swap
    if out.is_dir():
        candidates += [p for p in out.iterdir() if p.name.startswith(INSIDE_PREFIXES) and p.is_dir()]
    for path in candidates:
        state = _owner_state(path)
        size = _size_mb(path)
        if state == "alive":
            raise UsageError(f"another edgeify run is writing {out} right now (its staging directory "
                             f"{path}); wait for it, or choose another -o")
        if state == "gone":
            shutil.rmtree(path, ignore_errors=True)
            log_fn(f"      removed {path} ({size:.1f} MB), left by an edgeify run that was killed")
        else:
            log_fn(f"      note: {path} ({size:.1f} MB) looks left by an older edgeify run that was "
                   "killed; delete it if no edgeify is running")


def _owner_state(path: Path) -> str:
    """'alive' (its run holds the lock), 'gone' (nobody does) or 'unknown' (no lock file:
    an older edgeify's, or a run in its last instant)."""
    try:
        fd = os.open(path / LOCK, os.O_RDONLY)
    except OSError:
        return "unknown"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return "gone"
    except OSError:
        return "alive"
    finally:
        os.close(fd)


def _size_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total / 2**20


def _locked_tempdir(parent: Path, prefix: str) -> tuple[Path, int]:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    fd = os.open(path / LOCK, os.O_CREAT | os.O_RDWR, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return path, fd


def _unlock(path: Path, fd: int) -> None:
    (path / LOCK).unlink(missing_ok=True)
    os.close(fd)


# --- modes ----------------------------------------------------------------------------

def umask() -> int:
    """The process umask, read without changing it where /proc tells it (thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give `path` (and, for a directory, everything in it) the mode open()/mkdir() would:
    temp files and dirs are made 0600/0700, which other users and services cannot read."""
    mask = umask()
    path = Path(path)
    if not path.is_dir():
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for root, dirs, files in os.walk(path):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o777 & ~mask, follow_symlinks=False)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, 0o666 & ~mask)


@contextmanager
def _signals_held():
    """Defer SIGINT/SIGTERM/SIGHUP for the few renames that put an output in place."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Staging:
    """A locked temp directory for `final`, moved into place on success, removed otherwise.
    `final` comes from check_out_dir (resolved, and safe to replace if it exists)."""

    def __init__(self, final: Path, what: str = "run"):
        self.final = Path(final)
        self.what = what
        self.created: list[Path] = []

    def __enter__(self) -> Path:
        self.inside = self.final.is_dir()
        if self.inside:
            self.tmp, self.fd = _locked_tempdir(self.final, INSIDE_PREFIXES[0])
        else:
            missing = [p for p in [self.final.parent, *self.final.parent.parents] if not p.exists()]
            self.final.parent.mkdir(parents=True, exist_ok=True)
            self.created = missing  # deepest first: removed again if the run fails
            self.tmp, self.fd = _locked_tempdir(self.final.parent, f".{self.final.name}.partial-")
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            _unlock(self.tmp, self.fd)
            shutil.rmtree(self.tmp, ignore_errors=True)
            for p in self.created:
                try:
                    p.rmdir()
                except OSError:
                    break
            return False
        mark(self.tmp, self.what)
        apply_umask(self.tmp)
        try:
            with _signals_held():
                self._swap_in() if self.inside else self._rename_in()
        except OSError as e:  # a race (another process made `final`): the run is kept
            raise EdgeifyError(f"the run finished but could not be moved to {self.final} ({e.strerror or e}); "
                               f"it is kept in {self.tmp}") from None
        return False

    def _rename_in(self) -> None:
        _unlock(self.tmp, self.fd)
        os.replace(self.tmp, self.final)

    def _swap_in(self) -> None:
        """Move the old entries aside, the new ones in, then delete the old: `final` itself
        is never renamed (it may be a mount point, or the user's current directory)."""
        old, old_fd = _locked_tempdir(self.final, INSIDE_PREFIXES[1])
        for entry in list(self.final.iterdir()):
            if entry not in (self.tmp, old):
                os.replace(entry, old / entry.name)
        _unlock(self.tmp, self.fd)
        for entry in list(self.tmp.iterdir()):
            os.replace(entry, self.final / entry.name)
        self.tmp.rmdir()
        _unlock(old, old_fd)
        shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(final: Path) -> Path:
    """Beside the output (not inside its staging dir): it must outlive a failed run."""
    return final.with_name(f"{final.name}.checkpoints")
