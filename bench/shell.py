"""Shell: keystroke echo round trip and terminal output throughput, `ssh -tt` vs tether."""

from __future__ import annotations

from dataclasses import dataclass

from bench import ptydrive, sshd
from bench.harness import Figure, Results

SECTION_ECHO = "Shell keystroke echo (µs, lower is better)"
SECTION_RATE = "Shell output of `head -c N /dev/zero | base64` (MiB/s, higher is better)"


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
    goal: str = ""


def measure(results: Results, runs: int, name: str, prefix: list[str], *, keys: int, mib: int,
            peer: str | None, env: dict[str, str] | None = None) -> None:
    """Echo and throughput of the remote terminal that ``prefix + [command]`` opens."""
    measure_together(results, runs, [Row(name, prefix, peer, env)], keys=keys, mib=mib)


def measure_together(results: Results, runs: int, rows: list[Row], *, keys: int,
                     mib: int) -> None:
    """Several terminals' samples taken in turn (run 1 of each, then run 2 of each...), so
    that a ratio between them is not a ratio between two moments."""
    echoes = [results.add(Figure(row.name, "µs", peer=row.peer, goal=row.goal or (
        "no slower than ssh -tt" if row.peer else "")), SECTION_ECHO) for row in rows]
    rates = [results.add(Figure(row.name, "MiB/s", higher_is_better=True, peer=row.peer,
                                goal=row.goal or ("at least ssh -tt's" if row.peer else "")),
                         SECTION_RATE) for row in rows]
    for _ in range(runs):
        for row, echo in zip(rows, echoes, strict=True):
            echo.samples.append(ptydrive.keystroke_echo([*row.prefix, "cat"], keys, row.env))
    for _ in range(runs):
        for row, rate in zip(rows, rates, strict=True):
            rate.samples.append(ptydrive.output_rate([*row.prefix, base64_command(mib)],
                                                     row.env))


def run(results: Results, runs: int, quick: bool = False) -> None:
    """ssh -tt; tether's shell is measured by bench.tether_shell."""
    keys, mib = (50, 10) if quick else (300, 200)
    if not sshd.available():
        results.notes.append("ssh -tt not measured: openssh-server is not installed")
        return
    with sshd.running_sshd() as server:
        measure(results, runs, "ssh -tt", [*server.ssh_args()[:-1], "-tt",
                                           server.ssh_args()[-1]], keys=keys, mib=mib, peer=None)
