"""``python -m bench``: measure tether beside its peers and write bench/RESULTS.md."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from bench.harness import Results

#: Suites in the order they run; each module has ``run(results, runs, quick=...)`` or
#: ``run(results, runs)``.
SUITES = ["startup", "masking", "client_io", "forward", "tether_forward", "shell", "tether_shell",
          "errors_exit", "tether_logs", "gateway_load", "gateways"]


def main(argv: list[str] | None = None) -> int:
    """Run the suites, write the table, and say where it went."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and few runs: checks the harness works (seconds)")
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 5)")
    parser.add_argument("--only", action="append", choices=SUITES, help="run only these suites")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS.md"),
                        help="where to write the table")
    args = parser.parse_args(argv)
    runs = args.runs or 5
    results = Results()
    failed = []
    for name in args.only or SUITES:
        started = time.monotonic()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"bench.{name}")
        try:
            if "quick" in module.run.__code__.co_varnames:
                module.run(results, runs, quick=args.quick)
            else:
                module.run(results, runs)
        except Exception as exc:  # a suite that fails is reported, the others still run
            failed.append(name)
            results.notes.append(f"suite {name} failed: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        print(f"bench: {name} done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    results.write(args.out, quick=args.quick, runs=runs)
    print(f"bench: wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
