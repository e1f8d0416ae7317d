"""Durations as people write them (1h30m, 2m30s), wherever one is read, and --since's times."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import run_tether, tether_env
from tether.cli.commands.logs import parse_since
from tether.cli.options import duration_option
from tether.durations import parse_duration
from tether.gateway.config import load_config

NOW = 1767323045.0  # 2026-01-02T03:04:05Z


@pytest.mark.parametrize(("text", "seconds"), [
    ("1h30m", 5400), ("2m30s", 150), ("1h 30m", 5400), ("1h30m15s", 5415), ("1s500ms", 1.5),
    ("1.5h", 5400), ("0h1m", 60), ("90m", 5400), ("2M30S", 150),
])
def test_compound_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert duration_option(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["30m1h", "1h1h", "1h30", "1h-30m", "h30m", "1d", "1h,30m",
                                  "30s5m"])
def test_compound_durations_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"largest first \(500ms, 30s, 5m, 1h30m, 2m30s\)"):
        parse_duration(text)


def test_the_cli_and_the_gateway_read_the_same_durations(tmp_path: Path) -> None:
    proc = run_tether("--retry-for", "1h30m", "--connect-timeout", "2m30s", "errors",
                      "rate-limited", env=tether_env(None, None, tmp_path))
    assert proc.returncode == 0, proc.stderr
    bad = run_tether("--retry-for", "30m1h", "errors", env=tether_env(None, None, tmp_path))
    assert bad.returncode == 2 and b"1h30m" in bad.stderr
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\naccess_ttl = "1h30m"\n\n[services.api]\nshell = ["/bin/sh"]\n')
    assert load_config(config).access_ttl == 5400


@pytest.mark.parametrize(("text", "stamp", "assumed"), [
    ("1h30m", "2026-01-02T01:34:05.000000Z", False),
    ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05.000000Z", False),
    ("2026-01-02T05:04:05+02:00", "2026-01-02T03:04:05.000000Z", False),
    ("2026-01-01T22:04:05-05:00", "2026-01-02T03:04:05.000000Z", False),
    ("2026-01-02T03:04:05", "2026-01-02T03:04:05.000000Z", True),
    ("2026-01-02", "2026-01-02T00:00:00.000000Z", True),
])
def test_since_takes_an_offset_and_says_when_it_assumed_utc(text: str, stamp: str,
                                                            assumed: bool) -> None:
    assert parse_since(text, NOW) == (stamp, assumed)


def test_since_rejects_what_is_neither() -> None:
    with pytest.raises(ValueError, match=r"a time with its offset"):
        parse_since("yesterday", NOW)
