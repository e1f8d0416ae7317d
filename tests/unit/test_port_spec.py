"""Port mappings and listen addresses, as `tether port-forward` reads them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.cli.commands.port_forward import (
    PortSpec,
    parse_addresses,
    parse_port_spec,
    parse_port_specs,
)


@pytest.mark.parametrize(("spec", "expected"), [
    ("5432", PortSpec(5432, 5432)),
    ("8080:80", PortSpec(8080, 80)),
    (":5432", PortSpec(0, 5432)),
    ("0:5432", PortSpec(0, 5432)),
    ("1:65535", PortSpec(1, 65535)),
    ("65535", PortSpec(65535, 65535)),
])
def test_valid_specs(spec: str, expected: PortSpec) -> None:
    assert parse_port_spec(spec) == expected


@pytest.mark.parametrize(("spec", "words"), [
    ("", "empty port mapping"),
    ("0", "remote port must be from 1 to 65535, not 0"),
    ("65536", "remote port must be from 1 to 65535, not 65536"),
    ("8080:0", "remote port must be from 1 to 65535"),
    ("70000:80", "local port must be from 0 to 65535, not 70000"),
    ("http", "remote port 'http' is not a number"),
    ("a:80", "local port 'a' is not a number"),
    ("80:", "remote port '' is not a number"),
    ("-1", "is not a number"),
    ("1:2:3", "with one colon"),
    ("５４３２", "is not a number"),  # full-width digits are digits to isdigit(), not to us
    (" 80", "is not a number"),
])
def test_invalid_specs_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=re.escape(words)) as excinfo:
        parse_port_spec(spec)
    if spec:
        assert repr(spec) in str(excinfo.value)


def test_a_local_port_given_twice_is_refused_but_several_free_ports_are_fine() -> None:
    with pytest.raises(ValueError, match="local port 8080 is given twice"):
        parse_port_specs(["8080:80", "8080:81"])
    assert parse_port_specs([":80", ":81", "5432"]) == (PortSpec(0, 80), PortSpec(0, 81),
                                                       PortSpec(5432, 5432))


@given(st.integers(1, 65535), st.integers(0, 65535))
def test_every_valid_pair_round_trips(remote: int, local: int) -> None:
    assert parse_port_spec(f"{local}:{remote}") == PortSpec(local, remote)
    assert parse_port_spec(str(remote)) == PortSpec(remote, remote)


@given(st.text(max_size=12))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        spec = parse_port_spec(text)
    except ValueError:
        return
    assert 1 <= spec.remote <= 65535 and 0 <= spec.local <= 65535


def test_addresses() -> None:
    assert parse_addresses([]) == (("127.0.0.1", True), ("::1", True))  # kubectl's localhost
    assert parse_addresses(["localhost"]) == (("127.0.0.1", True), ("::1", True))
    assert parse_addresses(["127.0.0.1", "::1", "127.0.0.1"]) == (("127.0.0.1", False),
                                                                 ("::1", False))
    assert parse_addresses(["localhost", "::1"]) == (("127.0.0.1", True), ("::1", False))
    assert parse_addresses(["[::1]", "0.0.0.0"]) == (("::1", False), ("0.0.0.0", False))
    with pytest.raises(ValueError, match=r"'example\.com' is not an IP address or localhost"):
        parse_addresses(["example.com"])
