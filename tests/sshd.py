"""A throw-away sshd on 127.0.0.1, for the tests and the benchmark of targets/remote.py.

Real ssh end to end (keys, BatchMode, scp, the remote shell) is what remote.py has to get
right, so the tests log in to a real sshd rather than mocking subprocess. Everything it
needs is made in a temp dir: host and client ed25519 keys, authorized_keys, a known_hosts
file, and the directory every session's TMPDIR points to (sshd's SetEnv), so a test can
see what a run leaves behind on the "device".

    with local_sshd(tmp_dir) as sshd:
        measure_remote(sshd.device(python=sys.executable), artifact, feeds, threads=1)

.ci/run installs openssh-server and sets EDGEIFY_REQUIRE_SSHD=1: there a missing sshd
fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
REQUIRE_ENV = "EDGEIFY_REQUIRE_SSHD"


def missing_reason() -> str | None:
    """Why no local sshd can be started here, or None."""
    if not SSHD.exists():
        return f"{SSHD} is absent (apt-get install openssh-server)"
    for tool in ("ssh", "scp", "ssh-keygen"):
        if not any((Path(d) / tool).exists() for d in os.environ.get("PATH", "").split(os.pathsep) if d):
            return f"{tool} is not on PATH (apt-get install openssh-client)"
    return None


@dataclass
class LocalSshd:
    port: int
    user: str
    key: Path           # the client's private key
    known_hosts: Path
    remote_tmp: Path    # TMPDIR of every session: where mktemp -d makes the device's temp dirs
    log: Path
    proc: subprocess.Popen

    def device(self, **options):
        from edgeify.targets.remote import Device

        options = {"key": str(self.key), "known_hosts": str(self.known_hosts), "connect_timeout_s": 5, **options}
        return Device(self.user, "127.0.0.1", self.port, **options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_sshd(root: Path):
    """Start sshd -D on a free port of 127.0.0.1 with its files under `root`; stop it after."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_ed25519", "client_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeify-test", "-f", str(root / name)],
                       check=True, capture_output=True)
    (root / "authorized_keys").write_text((root / "client_ed25519.pub").read_text())
    host_key = (root / "host_ed25519.pub").read_text().split()
    remote_tmp = root / "device-tmp"
    remote_tmp.mkdir(exist_ok=True)
    port = free_port()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_ed25519'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", "PubkeyAuthentication yes",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
        f"PidFile {root / 'sshd.pid'}", "Subsystem sftp internal-sftp",
        f"SetEnv TMPDIR={remote_tmp}", "MaxStartups 100", "LogLevel VERBOSE", ""]))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    log = root / "sshd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, proc, log)
        yield LocalSshd(port, pwd.getpwuid(os.getuid()).pw_name, root / "client_ed25519", root / "known_hosts",
                        remote_tmp, log, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not accept connections on port {port} within {timeout:g}s: {log.read_text()[-500:]}")
