"""``tether shell`` as a user runs it: in a real pseudo-terminal (pexpect), and piped.

Every test runs the installed CLI (``python -m tether``) against a real gateway
on loopback, and checks that no token value appears in anything it printed.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.cli import TETHER, assert_no_secrets, json_events, run_tether, spawn_tether, tether_env
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(20)

PROMPT = r"[$#] $"  # dash's default prompts ($, or # as root): service api's shell is /bin/sh
TIMEOUT = 8.0


class Term:
    """A command in a pseudo-terminal, with everything it wrote kept for the secret check."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path,
                 size: tuple[int, int] = (24, 80)) -> None:
        self.log = io.BytesIO()
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(cwd), timeout=TIMEOUT,
                                   dimensions=size)
        self.child.logfile_read = self.log

    def expect(self, pattern: str) -> None:
        self.child.expect_exact(pattern)

    def prompt(self) -> None:
        self.child.expect(PROMPT)

    def status(self) -> int | None:
        """Wait for the end of output and the process; its exit status."""
        self.child.expect(pexpect.EOF)
        self.child.wait()
        status: int | None = self.child.exitstatus
        return status

    @property
    def output(self) -> bytes:
        return self.log.getvalue()

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def env(gateway: RunningGateway, deployer_token: str, tmp_path: Path) -> dict[str, str]:
    return tether_env(gateway.url, deployer_token, tmp_path)


@pytest.fixture
def secrets(deployer_token: str, viewer_token: str) -> list[str]:
    return [deployer_token, viewer_token]


def tether_term(terms: list[Term], env: dict[str, str], cwd: Path, *args: str,
                size: tuple[int, int] = (24, 80)) -> Term:
    term = Term([*TETHER, *args], env, cwd, size)
    terms.append(term)
    return term


def wrapped_term(terms: list[Term], env: dict[str, str], cwd: Path, *args: str) -> Term:
    """``tether ARGS`` run by sh in the same pty, with ``stty -a`` saved before and after.

    sh traps SIGINT (so that it survives Ctrl+C and runs the rest); tether gets the
    default disposition back, as any child of a trapping shell does.
    """
    command = " ".join(shlex.quote(a) for a in [*TETHER, *args])
    script = (f"trap : INT; stty -a > before; {command}; echo \"tether-rc=$?\"; "
              "stty -a > after")
    term = Term(["/bin/sh", "-c", script], env, cwd)
    terms.append(term)
    return term


def assert_terminal_restored(cwd: Path) -> None:
    before, after = (cwd / "before").read_text(), (cwd / "after").read_text()
    assert before and after == before


# --- with a terminal --------------------------------------------------------------------


def test_interactive_echo_and_exit(env: dict[str, str], tmp_path: Path, terms: list[Term],
                                   secrets: list[str]) -> None:
    term = tether_term(terms, env, tmp_path, "shell", "api")
    term.prompt()
    term.child.sendline("tty; echo hello-$((40+2))")
    term.expect("/dev/pts/")
    term.expect("hello-42")
    term.child.sendline("exit")
    assert term.status() == 0
    assert_no_secrets(secrets, term.output)


def test_remote_size_follows_the_local_terminal(env: dict[str, str], tmp_path: Path,
                                                terms: list[Term]) -> None:
    term = tether_term(terms, env, tmp_path, "shell", "api", size=(24, 80))
    term.prompt()
    term.child.sendline("stty size")
    term.expect("24 80")
    term.child.setwinsize(40, 132)
    time.sleep(0.2)  # SIGWINCH reaches tether, which sends the resize before the next keys
    term.child.sendline("stty size")
    term.expect("40 132")
    term.child.sendline("exit 0")
    assert term.status() == 0


def test_remote_terminal_takes_the_local_terminals_modes(env: dict[str, str], tmp_path: Path,
                                                         terms: list[Term]) -> None:
    """Like ssh: the erase key, iutf8 and flow control the user set reach the remote pty."""
    command = " ".join(shlex.quote(a) for a in [*TETHER, "shell", "api", "--", "stty", "-a"])
    term = Term(["/bin/sh", "-c", f"stty erase ^H iutf8 -ixon; {command}"], env, tmp_path)
    terms.append(term)
    assert term.status() == 0
    remote = term.output.decode()
    assert "erase = ^H" in remote
    assert " iutf8" in remote and " -ixon" in remote and " icanon" in remote


def test_exit_status_is_the_remote_commands(env: dict[str, str], tmp_path: Path,
                                            terms: list[Term]) -> None:
    term = tether_term(terms, env, tmp_path, "shell", "api", "--", "sh", "-c", "exit 3")
    assert term.status() == 3


def test_ctrl_c_goes_to_the_remote_program(env: dict[str, str], tmp_path: Path,
                                           terms: list[Term]) -> None:
    term = tether_term(terms, env, tmp_path, "shell", "api")
    term.prompt()
    term.child.sendline("sleep 30; echo slept-$((3*3))")
    time.sleep(0.3)
    term.child.sendcontrol("c")
    term.prompt()
    term.child.sendline("echo still-$((2+3))")
    term.expect("still-5")
    assert b"slept-9" not in term.output
    term.child.sendline("exit")
    assert term.status() == 0


def test_escape_help_then_disconnect(env: dict[str, str], tmp_path: Path, terms: list[Term],
                                     secrets: list[str]) -> None:
    term = wrapped_term(terms, env, tmp_path, "shell", "api")
    term.prompt()
    term.child.send("\r~?")
    term.expect("Supported escape sequences")
    term.child.send("\r~.")
    term.expect("Disconnected from api")
    term.expect("tether-rc=255")
    assert term.status() == 0
    assert_terminal_restored(tmp_path)
    assert_no_secrets(secrets, term.output)


def test_sigterm_while_connected_restores_the_terminal(env: dict[str, str], tmp_path: Path,
                                                       terms: list[Term]) -> None:
    term = wrapped_term(terms, env, tmp_path, "shell", "api")
    term.prompt()
    shell_pid = term.child.pid
    children = Path(f"/proc/{shell_pid}/task/{shell_pid}/children").read_text().split()
    assert len(children) == 1
    os.kill(int(children[0]), signal.SIGTERM)  # tether, started by the wrapping sh
    term.expect("tether-rc=143")
    assert term.status() == 0
    assert_terminal_restored(tmp_path)


def test_viewer_gets_the_role_panel_after_one_dial(gateway: RunningGateway, viewer_token: str,
                                                   tmp_path: Path, terms: list[Term],
                                                   secrets: list[str]) -> None:
    env = tether_env(gateway.url, viewer_token, tmp_path)
    term = wrapped_term(terms, env, tmp_path, "shell", "api")
    term.expect("tether-rc=77")
    assert term.status() == 0
    text = term.output.decode(errors="replace")
    assert "Permission denied" in text and "needs role Deployer" in text and "Viewer" in text
    # the URL named in the failure leaves out the terminal modes the dial carried
    assert "/v1/shell?service=api&tty=1" in text and "modes" not in text
    assert gateway.dial_count.get("/v1/shell") == 1
    assert_terminal_restored(tmp_path)
    assert_no_secrets(secrets, term.output)


def test_gateway_gone_mid_session_then_ctrl_c(gateway: RunningGateway, env: dict[str, str],
                                              tmp_path: Path, terms: list[Term],
                                              secrets: list[str]) -> None:
    term = wrapped_term(terms, env, tmp_path, "shell", "api")
    term.prompt()
    term.child.sendline("echo up")
    term.expect("up")
    gateway.stop()  # every session gets 1001; nothing listens any more
    term.expect("to resume")  # tether.v2: the session is detached, not yet known lost
    term.expect("Reconnecting in")
    term.expect("Ctrl+C to quit")
    term.child.sendcontrol("c")  # the terminal is cooked while waiting: this is SIGINT
    term.expect("tether-rc=130")
    assert term.status() == 0
    assert_terminal_restored(tmp_path)
    assert_no_secrets(secrets, term.output)


def test_gateway_restart_opens_a_new_shell(gateway: RunningGateway, env: dict[str, str],
                                           tmp_path: Path, terms: list[Term]) -> None:
    term = tether_term(terms, env, tmp_path, "shell", "api")
    term.prompt()
    term.child.sendline("cd / && echo moved")
    term.expect("moved")
    gateway.restart()
    term.expect("NEW shell")
    term.expect("This is a new shell on api.")
    term.prompt()
    term.child.sendline("pwd")
    term.expect(str(tmp_path / "work"))  # the old shell's directory did not survive
    term.child.sendline("exit 4")
    assert term.status() == 4
    assert b"session-expired" in term.output  # the resume found the session gone
    assert gateway.dial_count.get("/v1/shell") == 3  # the shell, the resume, the new shell


# --- without a terminal -----------------------------------------------------------------


def test_piped_binary_round_trip(env: dict[str, str], tmp_path: Path) -> None:
    payload = os.urandom(10 * 1024 * 1024)
    source, sink = tmp_path / "in.bin", tmp_path / "out.bin"
    source.write_bytes(payload)
    with source.open("rb") as stdin, sink.open("wb") as stdout:
        proc = subprocess.run([*TETHER, "shell", "api", "--", "cat"], stdin=stdin, stdout=stdout,
                              stderr=subprocess.PIPE, env=env, timeout=15, check=False)
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(sink.read_bytes()).digest() == hashlib.sha256(payload).digest()


def test_stdout_and_stderr_stay_apart(env: dict[str, str], secrets: list[str]) -> None:
    proc = run_tether("shell", "api", "--", "sh", "-c", "echo out; echo err >&2; exit 6",
                      env=env, timeout=15)
    assert (proc.returncode, proc.stdout, proc.stderr) == (6, b"out\n", b"err\n")
    assert_no_secrets(secrets, proc.stdout, proc.stderr)


def test_piped_stdin_end_is_sent(env: dict[str, str]) -> None:
    proc = run_tether("shell", "api", "--", "wc", "-c", env=env, input=b"x" * 1000, timeout=15)
    assert proc.returncode == 0
    assert proc.stdout.strip() == b"1000"


def test_forced_tty_without_a_terminal(env: dict[str, str]) -> None:
    proc = run_tether("shell", "-t", "api", "--", "sh", "-c", "test -t 0 && echo has-tty",
                      env=env, input=b"", timeout=15)
    assert proc.returncode == 0
    assert b"has-tty" in proc.stdout


def test_piped_command_is_not_run_again(gateway: RunningGateway, env: dict[str, str],
                                        secrets: list[str]) -> None:
    proc = spawn_tether("-o", "json", "shell", "api", "--", "sh", "-c", "echo started; sleep 30",
                        env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"started\n"
        gateway.restart()  # a gateway that comes back at once: still no second run
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait(5)
    assert proc.returncode == 69
    events = json_events(stderr)
    # tether.v2: the restart detached the session; the resume found it gone with the
    # gateway's memory, and a new session is never opened for a piped command
    assert events[0]["event"] == "detached" and events[0]["code"] == "gateway-restarting"
    assert events[-1]["event"] == "error" and events[-1]["code"] == "session-expired"
    assert "not run again" in events[-1]["hint"]
    assert not [e for e in events if e["event"] == "session-lost"]  # no new session
    assert gateway.dial_count.get("/v1/shell") == 2
    assert_no_secrets(secrets, stderr)


def test_sigint_without_a_terminal_exits_130(env: dict[str, str]) -> None:
    proc = spawn_tether("shell", "api", "--", "sh", "-c", "echo ready; sleep 30", env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
        assert time.monotonic() - started < 3
    finally:
        proc.kill()
        proc.wait(5)
    assert proc.returncode == 130


def test_tty_and_no_tty_together_is_a_usage_error(env: dict[str, str]) -> None:
    proc = run_tether("shell", "-t", "-T", "api", env=env, timeout=15)
    assert proc.returncode == 2
    assert b"--no-tty" in proc.stderr or b"-T" in proc.stderr


def test_shell_module_keeps_help_light() -> None:
    code = ("import sys; import tether.cli.app; "
            "bad = [m for m in ('websocket', 'keyring', 'jwt', 'websockets', 'tether.gateway', "
            "'tether.session.shell') if m in sys.modules]; print(bad)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=15, check=False)
    assert proc.stdout.strip() == "[]", proc.stderr
