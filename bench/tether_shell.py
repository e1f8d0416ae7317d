"""Shell: tether's keystroke echo and terminal output throughput, beside `ssh -tt`.

The reference gateway runs in its own process (``tether gateway serve``), as
sshd does for ssh, with one service whose shell is ``/bin/sh``; the figures go
into bench.shell's sections, so the ratios to ``ssh -tt`` appear when both
suites run (``python -m bench --only shell --only tether_shell``). tether speaks
tether.v2 (resumable) with the reference gateway; the ``v1`` row is the same
with ``resume = false``, so that its ratio is what v2's bookkeeping costs; v1 and v2
run side by side and their samples alternate.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from bench import shell
from bench.gateway_proc import running_gateway
from bench.harness import Results
from bench.startup import tether_command

SERVICE = "bench"
V1_NAME = "tether shell v1 (resume = false)"
V2_GOAL = "v2 costs under 5%: at most 1.05x"
_CONFIG = """
[gateway]
rate_limit = {{ rate = 100.0, burst = 100 }}
resume = {resume}

[services.{service}]
shell = ["/bin/sh"]
cwd = "{cwd}"
"""


def run(results: Results, runs: int, quick: bool = False) -> None:
    """``tether shell`` through a local gateway, compared with ssh -tt; v1 sampled in turn
    with v2, each through a gateway of its own."""
    keys, mib = (50, 10) if quick else (300, 200)
    with contextlib.ExitStack() as stack:
        rows = []
        for name, resume, peer, goal in (("tether shell", True, "ssh -tt", ""),
                                         (V1_NAME, False, "tether shell", V2_GOAL)):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="tether-bench-shell-")))
            work = tmp / "work"
            work.mkdir()
            config = _CONFIG.format(service=SERVICE, cwd=work, resume=str(resume).lower())
            gateway = stack.enter_context(running_gateway(tmp, config))
            rows.append(shell.Row(name, [*tether_command(), "shell", SERVICE, "--", "sh", "-c"],
                                  peer, gateway.client_env(), goal))
        shell.measure_together(results, runs, rows, keys=keys, mib=mib)
