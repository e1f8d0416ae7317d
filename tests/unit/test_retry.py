"""The retry policy and the duration parser: pure, with an injected clock and random source."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.client.retry import GiveUp, Refresh, RetryPolicy, RetryState, Wait
from tether.durations import parse_duration
from tether.errors import CATALOG, Code, Failure, Retry


def fail(code: Code, retry_after: float | None = None) -> Failure:
    return Failure.of(code, CATALOG[code].phases[0], "x", retry_after=retry_after)


def policy(**kwargs: float) -> RetryPolicy:
    return RetryPolicy(rng=random.Random(7), **kwargs)


def run(state: RetryState, code: Code, *, refreshable: bool = False, now: float = 0.0,
        limit: int = 1000) -> tuple[list[float], GiveUp, float]:
    """Feed failures of ``code`` until the policy gives up; the waits, the end, and the time."""
    waits: list[float] = []
    for _ in range(limit):
        decision = state.decide(fail(code), refreshable=refreshable, now=now)
        if isinstance(decision, GiveUp):
            return waits, decision, now
        if isinstance(decision, Wait):
            waits.append(decision.delay)
            now += decision.delay
    raise AssertionError("never gave up")


PERMANENT = [c for c, e in CATALOG.items() if e.retry in (Retry.NEVER, Retry.PER_CONNECTION)]
REFRESH = [c for c, e in CATALOG.items() if e.retry is Retry.REFRESH_ONCE]
BACKOFF = [c for c, e in CATALOG.items() if e.retry is Retry.BACKOFF]
BUDGET = [c for c, e in CATALOG.items() if e.retry is Retry.BUDGET]


@pytest.mark.parametrize("code", PERMANENT)
def test_permanent_gives_up_at_once(code: Code) -> None:
    decision = RetryState(policy()).decide(fail(code), refreshable=True, now=0.0)
    assert isinstance(decision, GiveUp)
    assert (decision.failure.code, decision.failure.attempts) == (code, 1)


@pytest.mark.parametrize("code", REFRESH)
def test_refresh_once_then_give_up(code: Code) -> None:
    state = RetryState(policy())
    assert state.decide(fail(code), refreshable=True, now=0.0) == Refresh()
    final = state.decide(fail(code), refreshable=True, now=0.1)
    assert isinstance(final, GiveUp) and final.failure.attempts == 2


@pytest.mark.parametrize("code", REFRESH)
def test_not_refreshable_gives_up_at_once(code: Code) -> None:
    decision = RetryState(policy()).decide(fail(code), refreshable=False, now=0.0)
    assert isinstance(decision, GiveUp) and decision.failure.attempts == 1


def test_refresh_guard_resets_after_a_stable_session_only() -> None:
    state = RetryState(policy(stable_after=10))
    assert state.decide(fail(Code.UNAUTHORIZED), refreshable=True, now=0) == Refresh()
    state.established(1)
    # broke 2 s later: the same run, so no second refresh
    assert isinstance(state.decide(fail(Code.TOKEN_EXPIRED), refreshable=True, now=3), GiveUp)
    state = RetryState(policy(stable_after=10))
    assert state.decide(fail(Code.UNAUTHORIZED), refreshable=True, now=0) == Refresh()
    state.established(1)
    assert state.decide(fail(Code.TOKEN_EXPIRED), refreshable=True, now=60) == Refresh()


def test_backoff_doubles_with_full_jitter_to_the_cap() -> None:
    state = RetryState(policy(retry_for=10_000))
    waits, final, _ = run(state, Code.GATEWAY_UNAVAILABLE)
    ceilings = [min(30.0, 0.5 * 2**i) for i in range(len(waits))]
    assert all(0 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert max(waits[8:]) > 15  # it does reach up towards the cap
    assert final.failure.attempts == len(waits) + 1


def test_backoff_stops_at_retry_for_with_the_last_failure() -> None:
    waits, final, now = run(RetryState(policy(retry_for=60)), Code.BACKEND_UNAVAILABLE)
    assert sum(waits) <= 60 and now <= 60
    assert (final.failure.code, final.failure.exit_code) == (Code.BACKEND_UNAVAILABLE, 69)


def test_retry_for_zero_never_retries() -> None:
    for code in (Code.GATEWAY_ERROR, Code.CONNECTION_REFUSED):
        decision = RetryState(policy(retry_for=0)).decide(fail(code), refreshable=False, now=0)
        assert isinstance(decision, GiveUp)


def test_connect_failures_have_a_short_budget() -> None:
    waits, final, now = run(RetryState(policy(connect_budget=20)), Code.DNS_FAILURE)
    assert now <= 20 and len(waits) >= 3
    assert final.failure.code is Code.DNS_FAILURE and final.failure.exit_code == 69
    waits, _, now = run(RetryState(policy(connect_budget=20, retry_for=5)), Code.DNS_FAILURE)
    assert now <= 5  # never longer than retry_for


def test_retry_after_is_honoured() -> None:
    state = RetryState(policy())
    decision = state.decide(fail(Code.RATE_LIMITED, retry_after=12.5), refreshable=False, now=0)
    assert isinstance(decision, Wait) and decision.delay == 12.5 and decision.attempt == 1


def test_retry_after_beyond_the_budget_gives_up_now() -> None:
    state = RetryState(policy(retry_for=10))
    decision = state.decide(fail(Code.RATE_LIMITED, retry_after=60), refreshable=False, now=0)
    assert isinstance(decision, GiveUp)


def test_a_stable_session_starts_a_new_run() -> None:
    state = RetryState(policy(retry_for=30, stable_after=5))
    run(state, Code.GATEWAY_ERROR)  # the first run used its budget
    state.established(100)
    decision = state.decide(fail(Code.CONNECTION_LOST), refreshable=False, now=200)
    assert isinstance(decision, Wait) and decision.attempt == 1 and decision.delay <= 0.5


def test_a_session_that_breaks_at_once_does_not_reset_the_budget() -> None:
    state = RetryState(policy(retry_for=30, stable_after=5))
    now, dials = 0.0, 0
    for _ in range(1000):
        dials += 1
        decision = state.decide(fail(Code.BACKEND_UNAVAILABLE), refreshable=False, now=now)
        if isinstance(decision, GiveUp):
            break
        assert isinstance(decision, Wait)
        now += decision.delay
        state.established(now)
        now += 0.1  # connected, then closed 1011 a moment later
    assert isinstance(decision, GiveUp) and now <= 31 and dials < 30


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), retry_after=st.none() | st.floats(0, 100),
       codes=st.lists(st.sampled_from(list(Code)), min_size=1, max_size=40),
       refreshable=st.booleans(), retry_for=st.floats(0, 600))
def test_properties(seed: int, retry_after: float | None, codes: list[Code], refreshable: bool,
                    retry_for: float) -> None:
    state = RetryState(RetryPolicy(rng=random.Random(seed), retry_for=retry_for))
    now, refreshes = 0.0, 0
    for code in codes:
        failure = fail(code, retry_after)
        decision = state.decide(failure, refreshable=refreshable, now=now)
        if isinstance(decision, Wait):
            assert failure.retry in (Retry.BACKOFF, Retry.BUDGET)
            assert 0 <= decision.delay <= max(30.0, retry_after or 0)
            assert decision.delay >= (retry_after or 0)
            now += decision.delay
            assert now <= retry_for + 1e-9
        elif isinstance(decision, Refresh):
            assert refreshable and failure.retry is Retry.REFRESH_ONCE
            refreshes += 1
            assert refreshes <= 1  # one per run; the run never ends here (no session)
        else:
            assert decision.failure.code is code and decision.failure.attempts
            if failure.retry in (Retry.NEVER, Retry.PER_CONNECTION):
                assert decision.failure.attempts >= 1
            break


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("30s", 30), ("5m", 300), ("1h", 3600), ("1.5", 1.5), ("0", 0),
    (" 2 s ", 2), ("0.25m", 15), (".5", 0.5), ("10MS", 0.01),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "-1", "5x", "m", "1e400", "30m1h", "nan", "inf", "1,5"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.floats(0, 1e6))
def test_parse_duration_round_trips_plain_seconds(seconds: float) -> None:
    text = f"{seconds:.6f}"
    assert parse_duration(text) == float(text)
    assert parse_duration(text + "s") == float(text)
    assert parse_duration(text + "ms") == pytest.approx(float(text) / 1000)
