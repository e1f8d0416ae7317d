"""Properties of the classifier: it never raises and never lets control characters through."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.classify import (
    classify_close,
    classify_exception,
    classify_handshake,
    parse_problem,
    parse_retry_after,
    parse_www_authenticate,
)
from tether.errors import CATALOG, Code, Failure, Phase

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0 (ESC included), DEL, C1
GUARD = "(details could not be read)"
FAST = settings(max_examples=150, deadline=None)

reasons = st.one_of(st.none(), st.text(max_size=200), st.binary(max_size=200),
                    st.builds(lambda c, t: f"{c}: {t}", st.sampled_from([c.value for c in Code]),
                              st.text(max_size=50)))
header_pairs = st.lists(st.tuples(st.text(max_size=30), st.text(max_size=200)), max_size=8)
known_headers = st.lists(st.tuples(
    st.sampled_from(["Retry-After", "WWW-Authenticate", "Location", "X-Request-Id",
                     "Content-Type"]),
    st.text(max_size=120)), max_size=5)
bodies = st.one_of(st.none(), st.binary(max_size=2000), st.text(max_size=500).map(str.encode),
                   st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                lambda inner: st.lists(inner, max_size=4)
                                | st.dictionaries(st.sampled_from(
                                    ["detail", "title", "code", "status", "services",
                                     "required_role", "request_id", "retry_after", "type"]),
                                    inner, max_size=6),
                                max_leaves=12).map(lambda v: repr(v).encode()))
names = st.one_of(st.none(), st.text(max_size=40))


def assert_clean(f: Failure) -> None:
    assert isinstance(f, Failure)
    assert f.code in CATALOG
    for text in (f.message, f.hint, f.title):
        assert not CONTROL.search(text), text
    for field in (f.close_reason, f.problem_title, f.problem_detail, f.problem_code,
                  f.request_id, f.required_role, f.url):
        assert field is None or not CONTROL.search(field), field
    assert GUARD not in f.message
    assert f.retry_after is None or 0 <= f.retry_after <= 86400


@FAST
@given(code=st.integers(0, 65535), reason=reasons, service=names, command=names, role=names)
def test_close_any_code_any_reason(code: int, reason: str | bytes | None, service: str | None,
                                   command: str | None, role: str | None) -> None:
    f = classify_close(code, reason, service=service, command=command, role=role)
    assert_clean(f)
    assert f.phase is Phase.SESSION
    assert f.close_code == code
    assert f.code is not Code.INTERNAL_ERROR


@FAST
@given(status=st.integers(100, 599), headers=st.one_of(header_pairs, known_headers),
       body=bodies, service=names, command=names, role=names,
       now=st.floats(0, 4e9))
def test_handshake_any_status_headers_body(status: int, headers: list[tuple[str, str]],
                                           body: bytes | None, service: str | None,
                                           command: str | None, role: str | None,
                                           now: float) -> None:
    f = classify_handshake(status, headers, body, service=service, command=command, role=role,
                           gateway="gw\x1b[1m", url="https://u:p@gw/x?token=t", now=now)
    assert_clean(f)
    assert f.phase is Phase.HANDSHAKE
    assert f.http_status == status
    assert f.code is not Code.INTERNAL_ERROR


@FAST
@given(status=st.integers(100, 599), headers=st.dictionaries(st.text(max_size=20),
                                                             st.text(max_size=100), max_size=6),
       body=st.binary(max_size=300))
def test_handshake_mapping_headers(status: int, headers: dict[str, str], body: bytes) -> None:
    assert_clean(classify_handshake(status, headers, body))


@FAST
@given(st.text(max_size=300))
def test_www_authenticate_never_raises(value: str) -> None:
    for challenge in parse_www_authenticate(value):
        assert challenge.scheme


@FAST
@given(st.text(max_size=60), st.floats(allow_nan=False, allow_infinity=False,
                                       min_value=-1e12, max_value=1e12))
def test_retry_after_bounded(value: str, now: float) -> None:
    got = parse_retry_after(value, now)
    assert got is None or 0 <= got <= 86400


@FAST
@given(bodies, st.one_of(st.none(), st.text(max_size=40)))
def test_parse_problem_never_raises(body: bytes | None, ctype: str | None) -> None:
    parse_problem(body, ctype)


@FAST
@given(st.sampled_from([ConnectionResetError, BrokenPipeError, TimeoutError, OSError,
                        ConnectionRefusedError, EOFError, ValueError]),
       st.one_of(st.none(), st.integers(-200, 200)), st.text(max_size=80),
       st.sampled_from(list(Phase)))
def test_exception_never_raises(kind: type[BaseException], number: int | None, text: str,
                                phase: Phase) -> None:
    exc = kind(number, text) if number is not None else kind(text)
    f = classify_exception(exc, phase=phase, url="wss://gw/x")
    assert_clean(f)
    if isinstance(exc, OSError):
        assert f.code is not Code.INTERNAL_ERROR
