"""Shell: tether's keystroke echo and terminal output throughput, beside `ssh -tt`.

The reference gateway runs in its own process (``tether gateway serve``), as
sshd does for ssh, with one service whose shell is ``/bin/sh``; the figures go
into bench.shell's sections, so the ratios to ``ssh -tt`` appear when both
suites run (``python -m bench --only shell --only tether_shell``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import shell
from bench.gateway_proc import running_gateway
from bench.harness import Results
from bench.startup import tether_command

SERVICE = "bench"
_CONFIG = """
[gateway]
rate_limit = {{ rate = 100.0, burst = 100 }}

[services.{service}]
shell = ["/bin/sh"]
cwd = "{cwd}"
"""


def run(results: Results, runs: int, quick: bool = False) -> None:
    """``tether shell`` through a local gateway, compared with ssh -tt."""
    keys, mib = (50, 10) if quick else (300, 200)
    with tempfile.TemporaryDirectory(prefix="tether-bench-shell-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        with running_gateway(Path(tmp), _CONFIG.format(service=SERVICE, cwd=work)) as gateway:
            env = gateway.client_env()
            prefix = [*tether_command(), "shell", SERVICE, "--", "sh", "-c"]
            shell.measure(results, runs, "tether shell", prefix, keys=keys, mib=mib,
                          peer="ssh -tt", env=env)
