"""Shell: tether's keystroke echo and terminal output throughput, beside `ssh -tt`.

The reference gateway runs in its own process (``tether gateway serve``), as
sshd does for ssh, with one service whose shell is ``/bin/sh``; the figures go
into bench.shell's sections, so the ratios to ``ssh -tt`` appear when both
suites run (``python -m bench --only shell --only tether_shell``). tether speaks
tether.v2 (resumable) with the reference gateway; the ``v1`` row is the same
with ``resume = false``, so that its ratio is what v2's bookkeeping costs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench import shell
from bench.gateway_proc import running_gateway
from bench.harness import Results
from bench.startup import tether_command

SERVICE = "bench"
V1_NAME = "tether shell v1 (resume = false)"
_CONFIG = """
[gateway]
rate_limit = {{ rate = 100.0, burst = 100 }}
resume = {resume}

[services.{service}]
shell = ["/bin/sh"]
cwd = "{cwd}"
"""


def run(results: Results, runs: int, quick: bool = False) -> None:
    """``tether shell`` through a local gateway, compared with ssh -tt; and v2 beside v1."""
    keys, mib = (50, 10) if quick else (300, 200)
    for name, resume, peer in (("tether shell", True, "ssh -tt"),
                               (V1_NAME, False, "tether shell")):
        with tempfile.TemporaryDirectory(prefix="tether-bench-shell-") as tmp:
            work = Path(tmp) / "work"
            work.mkdir()
            config = _CONFIG.format(service=SERVICE, cwd=work, resume=str(resume).lower())
            with running_gateway(Path(tmp), config) as gateway:
                env = gateway.client_env()
                prefix = [*tether_command(), "shell", SERVICE, "--", "sh", "-c"]
                shell.measure(results, runs, name, prefix, keys=keys, mib=mib, peer=peer,
                              env=env)
        if not resume:
            for section in (shell.SECTION_ECHO, shell.SECTION_RATE):
                results.sections[section][name].goal = "v2 costs under 5%: at most 1.05x"
