"""glibc's allocator set for a process that moves large messages: no page faults per message.

glibc gives a block of 128 KiB or more a mapping of its own, and gives the top
of the heap back to the system once 128 KiB of it are free. It raises both
limits by itself as blocks are freed, but the trim limit stays below what a
gateway frees between two reads: every 64–256 KiB message then lands on pages
the kernel has to fault in and zero again (60 page faults per MiB forwarded,
bench/analysis.md). Fixed limits keep such messages on the heap and the freed
top for the next one. Setting one limit alone turns off the adjustment of the
other, so both are set; an environment that sets either (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``) is left as it is. glibc's ``mallopt`` through ctypes is
the only way to do this from Python; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os

#: Blocks up to this size come from the heap.
MMAP_THRESHOLD = 1 << 20
#: Free memory at the top of the heap kept for later blocks, up to this much.
TRIM_THRESHOLD = 8 << 20

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def is_glibc() -> bool:
    """Whether this process runs on glibc."""
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # no such name here (not glibc, not POSIX)
        return False


def tune() -> bool:
    """Fix glibc's mapping and trim limits for large messages; True when they were set."""
    if not is_glibc() or any(os.environ.get(name) for name in _ENVIRONMENT):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
