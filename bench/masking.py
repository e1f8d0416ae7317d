"""Client frame masking: MB/s of each way to mask a payload, at three frame sizes.

websockets' C ``apply_mask`` (what :mod:`tether.client.connection` uses), its
pure-Python fallback, websocket-client's own masking, and wsaccel when it
happens to be installed (it is no longer a dependency).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from bench.harness import Figure, Results

SECTION = "Client frame masking (MB/s, higher is better)"
SIZES = (1024, 16 * 1024, 64 * 1024)
_PEER = "websocket-client"

Masker = Callable[[bytes, bytes], bytes]


def _maskers() -> dict[str, Masker]:
    import websocket
    from websockets import utils

    found: dict[str, Masker] = {}
    try:
        from websockets.speedups import apply_mask
    except ImportError:
        pass
    else:
        found["websockets C apply_mask"] = apply_mask
    found["websockets pure Python"] = utils.apply_mask
    found[_PEER] = lambda data, key: websocket.ABNF.mask(key, data)
    try:
        from wsaccel.xormask import createXorMasker  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        pass
    else:
        found["wsaccel"] = lambda data, key: createXorMasker(key).process(data)
    return found


def rate(mask: Masker, size: int, seconds: float = 0.2) -> float:
    """MB/s of masking ``size``-byte payloads with fresh keys for about ``seconds``."""
    data = os.urandom(size)
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(16):
            mask(data, os.urandom(4))
        done += 16 * size
    return done / elapsed / 1e6


def run(results: Results, runs: int, quick: bool = False) -> None:
    """Each masker at each size; the ratio is to websocket-client's own masking."""
    seconds = 0.05 if quick else 0.2
    for size in SIZES:
        for name, mask in _maskers().items():
            label = f"{name}, {size // 1024} KiB frames"
            figure = results.add(Figure(label, "MB/s", higher_is_better=True,
                                        peer=None if name == _PEER
                                        else f"{_PEER}, {size // 1024} KiB frames"), SECTION)
            figure.samples = [rate(mask, size, seconds) for _ in range(runs)]
