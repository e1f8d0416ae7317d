"""glibc's allocator tuned for large messages: freed 256 KiB messages no longer fault pages in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tether.gateway import allocator

pytestmark = pytest.mark.skipif(not allocator.is_glibc(), reason="glibc's allocator only")

_PROBE = """
import json, os, resource, sys
from tether.gateway import allocator
tuned = allocator.tune() if sys.argv[1] == "tune" else None
def messages():
    for _ in range(100):  # four 256 KiB messages alive at once, then freed, as a gateway does
        held = [os.urandom(1) * (256 * 1024) for _ in range(4)]
        del held
messages()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
messages()
print(json.dumps({"tuned": tuned,
                  "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def _probe(mode: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env={**clean, **env},
                         capture_output=True, text=True, timeout=60, check=True).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_tuned_process_reuses_freed_message_memory() -> None:
    plain, tuned = _probe("plain"), _probe("tune")
    assert tuned["tuned"] is True
    # 100 rounds of 1 MiB: glibc's defaults fault most pages in again every round
    assert isinstance(plain["faults"], int) and plain["faults"] > 100 * 64
    assert isinstance(tuned["faults"], int) and tuned["faults"] < 100


def test_environment_setting_is_left_alone() -> None:
    assert _probe("tune", MALLOC_TRIM_THRESHOLD_="131072")["tuned"] is False
    assert _probe("tune", MALLOC_MMAP_THRESHOLD_="131072")["tuned"] is False
