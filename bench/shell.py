"""Shell: keystroke echo round trip and terminal output throughput, `ssh -tt` vs tether."""

from __future__ import annotations

from bench import ptydrive, sshd
from bench.harness import Figure, Results

SECTION_ECHO = "Shell keystroke echo (µs, lower is better)"
SECTION_RATE = "Shell output of `head -c N /dev/zero | base64` (MiB/s, higher is better)"


def base64_command(mib: int) -> str:
    """The remote command whose output is measured."""
    return f"head -c {mib}M /dev/zero | base64"


def measure(results: Results, runs: int, name: str, prefix: list[str], *, keys: int, mib: int,
            peer: str | None, env: dict[str, str] | None = None) -> None:
    """Echo and throughput of the remote terminal that ``prefix + [command]`` opens."""
    echo = results.add(Figure(name, "µs", peer=peer, goal="no slower than ssh -tt" if peer else ""),
                       SECTION_ECHO)
    rate = results.add(Figure(name, "MiB/s", higher_is_better=True, peer=peer,
                              goal="at least ssh -tt's" if peer else ""), SECTION_RATE)
    echo.samples = [ptydrive.keystroke_echo([*prefix, "cat"], keys, env) for _ in range(runs)]
    rate.samples = [ptydrive.output_rate([*prefix, base64_command(mib)], env)
                    for _ in range(runs)]


def run(results: Results, runs: int, quick: bool = False) -> None:
    """ssh -tt; tether's shell is measured by bench.tether_shell."""
    keys, mib = (50, 10) if quick else (300, 200)
    if not sshd.available():
        results.notes.append("ssh -tt not measured: openssh-server is not installed")
        return
    with sshd.running_sshd() as server:
        measure(results, runs, "ssh -tt", [*server.ssh_args()[:-1], "-tt",
                                           server.ssh_args()[-1]], keys=keys, mib=mib, peer=None)
