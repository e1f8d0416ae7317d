"""A throwaway sshd on a loopback port: keys and config in a temporary directory.

Nothing outside that directory is touched, except that OpenSSH insists on its
privilege-separation directory (/run/sshd) existing; it is created empty if it
is missing, as Debian's own service does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import stop_process

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass(frozen=True)
class Sshd:
    """A running sshd and the ssh options that reach it."""

    port: int
    key: Path
    known_hosts: Path

    def ssh_args(self) -> list[str]:
        """``ssh`` with everything needed to log in without prompts."""
        return ["ssh", "-F", "/dev/null", "-i", str(self.key), "-p", str(self.port),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "LogLevel=ERROR",
                f"{_user()}@127.0.0.1"]


def available() -> bool:
    """Whether sshd and ssh are installed."""
    return Path(SSHD).exists() and shutil.which("ssh") is not None and \
        shutil.which("ssh-keygen") is not None


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_sshd(timeout: float = 10.0) -> Iterator[Sshd]:
    """Start sshd on 127.0.0.1, yield how to reach it, stop it (by PID) on the way out."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-sshd-") as tmp:
        d = Path(tmp)
        for name, kind in (("host_key", "ed25519"), ("client_key", "ed25519")):
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(d / name)],
                           check=True)
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        port = free_port()
        config = d / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}",
            f"AuthorizedKeysFile {d / 'authorized_keys'}", f"PidFile {d / 'sshd.pid'}",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", "AllowTcpForwarding yes", "PrintMotd no",
            "PrintLastLog no", "UseDNS no", "",
        ]))
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_listening(port, proc, timeout)
            yield Sshd(port, d / "client_key", d / "known_hosts")
        finally:
            stop_process(proc)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"sshd exited at start: {err.strip()[:500]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on 127.0.0.1:{port} within {timeout} s")
