"""The retry decision: after a failure, refresh, wait, or give up. Pure: no sleeping, no I/O.

The clock (``now``) and the random source are passed in, so that the policy
can be read, replaced and tested on its own (like ``process_exception`` in
websockets)::

    state = RetryState(RetryPolicy())
    match state.decide(failure, refreshable=credential.refreshable, now=clock()):
        case Refresh():           credential.refresh(); redial at once
        case Wait(delay=d):       sleep d; redial
        case GiveUp(failure=f):   raise TetherError(f)

Rules (ERRORS.md):

- ``Retry.NEVER`` stops at once. ``Retry.PER_CONNECTION`` (target-unreachable)
  also stops here: it fails one forwarded connection, and the port-forward
  command, not this policy, decides to keep listening.
- ``Retry.REFRESH_ONCE`` asks for one refresh per run of failures when the
  credential is refreshable, and stops otherwise.
- ``Retry.BACKOFF`` waits with full jitter, ``uniform(0, min(cap, base * 2**n))``,
  never less than the failure's ``retry_after``, until ``retry_for`` seconds
  of continuous failure have passed (0: never retry).
- ``Retry.BUDGET`` (DNS, refused, timeout) is the same, and also within
  ``connect_budget`` counted from the first of the consecutive connect
  failures: a typo in the address looks transient too.
- First contact: until a session has been established in this run, a name
  that does not exist (NXDOMAIN) and a refused connection stop at once, as
  with ssh and kubectl, unless ``patient_first_contact`` is set (the user
  asked to wait for the gateway with an explicit ``--retry-for``). Once a
  session was established they retry like every other BUDGET failure.
- A run of failures ends when a session was established and then lasted at
  least ``stable_after`` seconds. A session that breaks sooner continues the
  run (the backoff keeps growing and the budget keeps counting), so a gateway
  that accepts and drops at once cannot cause an endless fast loop. The
  refresh guard resets with the run.
- No wait ends past the budget: the policy gives up instead of sleeping
  through it, and the last failure, with ``attempts`` set, is the result.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tether.classify import name_does_not_exist
from tether.errors import Code, Failure, Retry


@dataclass(frozen=True)
class Refresh:
    """Refresh the credential, then redial at once."""


@dataclass(frozen=True)
class Wait:
    """Wait ``delay`` seconds, then redial. ``attempt`` is the number of the attempt that failed."""

    delay: float
    attempt: int


@dataclass(frozen=True)
class GiveUp:
    """Stop: ``failure`` is final; its ``attempts`` says how many dials the run made."""

    failure: Failure


Decision = Refresh | Wait | GiveUp


@dataclass(frozen=True)
class RetryPolicy:
    """The numbers of the policy, in seconds."""

    base: float = 0.5
    cap: float = 30.0
    retry_for: float = 300.0
    connect_budget: float = 20.0
    stable_after: float = 10.0
    #: retry a missing name or a refused connection before any session was established
    patient_first_contact: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("base", "cap", "retry_for", "connect_budget", "stable_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def backoff(self, waits: int) -> float:
        """The jittered delay before retry number ``waits + 1`` of a run: full jitter."""
        ceiling = min(self.cap, self.base * 2.0 ** min(waits, 64))
        return self.rng.uniform(0.0, ceiling)


class RetryState:
    """One command's retry state across its dials; feed it every failure and every connection."""

    def __init__(self, policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self._run_start: float | None = None  # first failure of the current run
        self._connect_start: float | None = None  # first of the consecutive BUDGET failures
        self._attempts = 0  # failed dials or sessions in the current run
        self._waits = 0
        self._refreshed = False
        self._connected_at: float | None = None
        self._ever_established = False

    @property
    def attempts(self) -> int:
        """Failures in the current run."""
        return self._attempts

    def established(self, now: float) -> None:
        """A connection was made (the WebSocket handshake succeeded)."""
        self._connected_at = now
        self._connect_start = None
        self._ever_established = True

    def decide(self, failure: Failure, *, refreshable: bool, now: float) -> Decision:
        """What to do after ``failure``, seen at ``now``."""
        policy = self.policy
        if self._connected_at is not None and now - self._connected_at >= policy.stable_after:
            self._new_run()
        self._connected_at = None
        if self._run_start is None:
            self._run_start = now
        self._attempts += 1
        final = failure.replace(attempts=self._attempts)

        if not (policy.patient_first_contact or self._ever_established) and _wrong_address(
                failure):
            return GiveUp(final)
        kind = failure.retry
        if kind is Retry.REFRESH_ONCE:
            if refreshable and not self._refreshed:
                self._refreshed = True
                return Refresh()
            return GiveUp(final)
        if kind not in (Retry.BACKOFF, Retry.BUDGET) or policy.retry_for <= 0:
            return GiveUp(final)

        if kind is Retry.BUDGET:
            if self._connect_start is None:
                self._connect_start = now
        else:
            self._connect_start = None
        delay = max(policy.backoff(self._waits), failure.retry_after or 0.0)
        ends = now + delay
        if ends - self._run_start > policy.retry_for or (
                self._connect_start is not None
                and ends - self._connect_start > policy.connect_budget):
            return GiveUp(final)
        self._waits += 1
        return Wait(delay, self._attempts)

    def refresh_not_done(self) -> None:
        """The refresh that was decided did not happen (its endpoint was unreachable)."""
        self._refreshed = False

    def _new_run(self) -> None:
        self._run_start = None
        self._connect_start = None
        self._attempts = 0
        self._waits = 0
        self._refreshed = False


def _wrong_address(failure: Failure) -> bool:
    """A name that does not exist or a port nobody listens on: most often a wrong address."""
    return failure.code is Code.CONNECTION_REFUSED or name_does_not_exist(failure)
