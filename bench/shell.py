"""Shell: keystroke echo round trip and terminal output throughput, `ssh -tt` vs tether,
beside the floor of a Python remote terminal here (bench.term_relay)."""

from __future__ import annotations

from dataclasses import dataclass

from bench import ptydrive, sshd, term_relay
from bench.harness import Figure, Results

SECTION_ECHO = "Shell keystroke echo (µs, lower is better)"
SECTION_RATE = "Shell output of `head -c N /dev/zero | base64` (MiB/s, higher is better)"
FLOOR = "Python floor: a bare terminal relay, no WebSocket"


def base64_command(mib: int) -> str:
    """The remote command whose output is measured."""
    return f"head -c {mib}M /dev/zero | base64"


@dataclass(frozen=True)
class Row:
    """One remote terminal to measure: its name, the command that opens it, its peer."""

    name: str
    prefix: list[str]
    peer: str | None
    env: dict[str, str] | None = None
    goal: str | None = None  # None: the usual goal against the peer


def measure(results: Results, runs: int, name: str, prefix: list[str], *, keys: int, mib: int,
            peer: str | None, env: dict[str, str] | None = None) -> None:
    """Echo and throughput of the remote terminal that ``prefix + [command]`` opens."""
    measure_together(results, runs, [Row(name, prefix, peer, env)], keys=keys, mib=mib)


def _goal(row: Row, usual: str) -> str:
    if row.goal is not None:
        return row.goal
    return usual if row.peer else ""


def measure_together(results: Results, runs: int, rows: list[Row], *, keys: int,
                     mib: int) -> None:
    """Several terminals' samples taken in turn (run 1 of each, then run 2 of each...), so
    that a ratio between them is not a ratio between two moments."""
    echoes = [results.add(Figure(row.name, "µs", peer=row.peer, goal=_goal(
        row, "no slower than ssh -tt")), SECTION_ECHO) for row in rows]
    rates = [results.add(Figure(row.name, "MiB/s", higher_is_better=True, peer=row.peer,
                                goal=_goal(row, "at least ssh -tt's")), SECTION_RATE)
             for row in rows]
    for _ in range(runs):
        for row, echo in zip(rows, echoes, strict=True):
            echo.samples.append(ptydrive.keystroke_echo([*row.prefix, "cat"], keys, row.env))
    for _ in range(runs):
        for row, rate in zip(rows, rates, strict=True):
            rate.samples.append(ptydrive.output_rate([*row.prefix, base64_command(mib)],
                                                     row.env))


def run(results: Results, runs: int, quick: bool = False) -> None:
    """ssh -tt and the Python floor (bench.term_relay), sampled in turn; tether's shell is
    measured by bench.tether_shell."""
    keys, mib = (50, 10) if quick else (300, 200)
    with term_relay.server() as floor:
        if not sshd.available():
            results.notes.append("ssh -tt not measured: openssh-server is not installed")
            measure(results, runs, FLOOR, floor, keys=keys, mib=mib, peer=None)
            return
        with sshd.running_sshd() as server:
            measure_together(results, runs, [
                Row("ssh -tt", [*server.ssh_args()[:-1], "-tt", server.ssh_args()[-1]], None),
                Row(FLOOR, floor, "ssh -tt", goal=""),
            ], keys=keys, mib=mib)
