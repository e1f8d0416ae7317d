"""Figures and their peers: samples, medians, ratios, and the RESULTS.md table."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    """One measured quantity: its samples, and optionally the peer it is compared with."""

    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    higher_is_better: bool = False
    peer: str | None = None  # the name of the Figure this one is compared with
    goal: str = ""
    note: str = ""

    @property
    def median(self) -> float:
        """The median sample (NaN when there is none)."""
        return statistics.median(self.samples) if self.samples else float("nan")

    def cell(self) -> str:
        """``median (min–max)`` in the figure's unit."""
        if not self.samples:
            return "not measured"
        low, high = _fmt(min(self.samples)), _fmt(max(self.samples))
        return f"{_fmt(self.median)} ({low}–{high}) {self.unit}"


def _fmt(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def time_command(argv: list[str], *, env: dict[str, str] | None = None,
                 timeout: float = 60.0) -> float:
    """Wall-clock seconds for one run of ``argv``, which must succeed."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, timeout=timeout)
    return time.perf_counter() - start


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """End a process this run started: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class Results:
    """All figures of one run, written as a Markdown table."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Figure]] = {}
        self.notes: list[str] = []

    def add(self, figure: Figure, section: str) -> Figure:
        """Record ``figure`` under ``section``; its peer is named within the same section."""
        self.sections.setdefault(section, {})[figure.name] = figure
        return figure

    def ratio(self, figure: Figure, section: str) -> str:
        """How ``figure`` compares with its peer: >1 means better than the peer."""
        peer = self.sections[section].get(figure.peer or "")
        if peer is None:
            return ""
        mine, theirs = figure.median, peer.median
        if not mine or not theirs or mine != mine or theirs != theirs:
            return ""
        better = mine / theirs if figure.higher_is_better else theirs / mine
        return f"{better:.2f}x vs {figure.peer}"

    def markdown(self, *, quick: bool, runs: int) -> str:
        """The RESULTS.md text."""
        lines = [
            "# tether benchmark results",
            "",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- machine: {platform.machine()}, {os.cpu_count()} cores, {_memory()}, "
            f"{platform.system()} {platform.release()}",
            f"- python: {sys.version.split()[0]}; mode: {'quick' if quick else 'full'}; "
            f"runs per figure: {runs} (median, min–max)",
            "- ratio: how many times better than the peer measured in the same run "
            "(>1 is better, whether the figure is a time or a rate)",
            "",
        ]
        for title, figures in self.sections.items():
            lines += [f"## {title}", "", "| figure | median (min–max) | compared | goal |",
                      "|---|---|---|---|"]
            for fig in figures.values():
                lines.append(f"| {fig.name} | {fig.cell()} | {self.ratio(fig, title)} "
                             f"| {fig.goal} |")
            notes = [fig.note for fig in figures.values() if fig.note]
            lines += [""] + [f"- {n}" for n in notes] + ([""] if notes else [])
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        lines += ["Reproduce: `make bench` (or `.venv/bin/python -m bench`; `--quick` for a "
                  "smoke run).", ""]
        analysis = Path(__file__).with_name("analysis.md")
        if analysis.exists():  # where the time goes: kept by hand beside the harness
            lines += [analysis.read_text(encoding="utf-8").rstrip(), ""]
        return "\n".join(lines)

    def write(self, path: Path, *, quick: bool, runs: int) -> None:
        """Write the table to ``path``."""
        path.write_text(self.markdown(quick=quick, runs=runs), encoding="utf-8")


def _memory() -> str:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return "memory unknown"
    return f"{pages / 2**30:.0f} GiB"
