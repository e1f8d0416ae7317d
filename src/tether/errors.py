"""The error catalog: every failure tether can meet, as one record with a stable code.

The table ``CATALOG`` is the single source of truth: ``tether errors``,
``docs/errors.md``, the README's error table and the JSON output are all made
from it. A failure anywhere becomes a :class:`Failure`; the CLI renders it
once, at one boundary, and exits with its ``exit_code``.

Exception tree::

    Exception
     └── TetherError      raised when any operation fails; carries the Failure
          └── Interrupted raised when the user pressed Ctrl+C or sent SIGTERM/SIGHUP

Nothing else is raised across a module boundary of tether: library exceptions
are mapped at the I/O edge (``raise TetherError(failure) from exc``).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any


class Phase(enum.StrEnum):
    """Where in the life of a command a failure happened."""

    CONFIG = "config"  # before any network
    CREDENTIALS = "credentials"  # loading, refreshing
    CONNECT = "connect"  # DNS, TCP, TLS, proxy
    HANDSHAKE = "handshake"  # HTTP refusal of the upgrade
    SESSION = "session"  # after the upgrade
    LOCAL = "local"  # this machine: ports, terminal


class Retry(enum.StrEnum):
    """How the retry policy treats a code."""

    NEVER = "no"  # permanent: stop at once
    BUDGET = "budget"  # transient, but only within the short connect budget
    REFRESH_ONCE = "refresh-once"  # refresh a refreshable JWT once, then permanent
    BACKOFF = "yes"  # transient: back off and retry within --retry-for
    PER_CONNECTION = "per-connection"  # fails one forwarded connection, not the command


@enum.unique
class ExitStatus(enum.IntEnum):
    """Process exit statuses (sysexits.h where one fits, 128+signal for signals)."""

    OK = 0
    INTERNAL = 1
    COMMAND_LINE = 2  # the command line was wrong (Click's convention for usage errors)
    USAGE = 64  # EX_USAGE: the request was malformed
    DATA = 65  # EX_DATAERR: the peer spoke something we cannot read
    UNAVAILABLE = 69  # EX_UNAVAILABLE: a service is not reachable or not healthy
    LOCAL_OS = 71  # EX_OSERR: this machine refused (ports)
    TEMPORARY = 75  # EX_TEMPFAIL: try again later
    NO_PERMISSION = 77  # EX_NOPERM: credentials or role
    CONFIG = 78  # EX_CONFIG: settings need fixing
    HANGUP = 129  # SIGHUP
    INTERRUPTED = 130  # SIGINT (Ctrl+C)
    TERMINATED = 143  # SIGTERM


class Code(enum.StrEnum):
    """Stable failure codes. Scripts may match on them; never renamed."""

    USAGE_ERROR = "usage-error"
    NOT_CONFIGURED = "not-configured"
    UNKNOWN_CONTEXT = "unknown-context"
    INVALID_URL = "invalid-url"
    NO_CREDENTIALS = "no-credentials"
    KEYRING_UNAVAILABLE = "keyring-unavailable"
    DNS_FAILURE = "dns-failure"
    CONNECTION_REFUSED = "connection-refused"
    CONNECT_TIMEOUT = "connect-timeout"
    NETWORK_UNREACHABLE = "network-unreachable"
    TLS_ERROR = "tls-error"
    PROXY_ERROR = "proxy-error"
    INVALID_REQUEST = "invalid-request"
    UNAUTHORIZED = "unauthorized"
    TOKEN_EXPIRED = "token-expired"  # noqa: S105 - a code, not a secret
    REFRESH_FAILED = "refresh-failed"
    PERMISSION_DENIED = "permission-denied"
    NOT_FOUND = "not-found"
    PORT_NOT_FORWARDED = "port-not-forwarded"
    RATE_LIMITED = "rate-limited"
    GATEWAY_ERROR = "gateway-error"
    GATEWAY_UNAVAILABLE = "gateway-unavailable"
    GATEWAY_UNREACHABLE = "gateway-unreachable"
    STATE_UNAVAILABLE = "state-unavailable"
    BACKEND_UNAVAILABLE = "backend-unavailable"
    AGENT_TIMEOUT = "agent-timeout"
    GATEWAY_RESTARTING = "gateway-restarting"
    OVERLOADED = "overloaded"
    CONNECTION_LOST = "connection-lost"
    KEEPALIVE_TIMEOUT = "keepalive-timeout"
    SESSION_EXPIRED = "session-expired"
    RESUME_LOST = "resume-lost"
    TARGET_UNREACHABLE = "target-unreachable"
    MESSAGE_TOO_BIG = "message-too-big"
    PROTOCOL_ERROR = "protocol-error"
    UNEXPECTED_STATUS = "unexpected-status"
    LOCAL_PORT_IN_USE = "local-port-in-use"
    INTERRUPTED = "interrupted"
    INTERNAL_ERROR = "internal-error"


@dataclass(frozen=True)
class Entry:
    """One row of the catalog."""

    title: str
    phases: tuple[Phase, ...]
    when: str  # what is seen, in substance: when this code happens
    hint: str  # what to do next, by default
    retry: Retry
    exit_status: ExitStatus


_P = Phase
_R = Retry
_X = ExitStatus
_LOGIN = "Run `tether auth login` to sign in again, or set TETHER_TOKEN to a valid API token."

CATALOG: dict[Code, Entry] = {
    Code.USAGE_ERROR: Entry(
        "Usage error", (_P.CONFIG,),
        "the command line was wrong: an unknown command, option or error code, a missing "
        "argument, a value that does not parse",
        "Read the message; `tether COMMAND -h` shows what the command accepts.",
        _R.NEVER, _X.COMMAND_LINE),
    Code.NOT_CONFIGURED: Entry(
        "No gateway configured", (_P.CONFIG,), "no gateway URL is set",
        "Run `tether auth login URL`, pass --gateway URL, or set TETHER_GATEWAY.",
        _R.NEVER, _X.CONFIG),
    Code.UNKNOWN_CONTEXT: Entry(
        "Unknown context", (_P.CONFIG,),
        "--context, TETHER_CONTEXT, `tether auth switch` or the config file's current-context "
        "names a context the config file does not have",
        "Pick one of the contexts listed (`tether auth status` shows them all), or add it "
        "with `tether auth login URL --context NAME`.",
        _R.NEVER, _X.CONFIG),
    Code.INVALID_URL: Entry(
        "Invalid gateway URL", (_P.CONFIG,),
        "the URL does not parse, or its scheme is not ws, wss, http or https",
        "Give the gateway as https://HOST[:PORT] (or wss://, ws://, http://).",
        _R.NEVER, _X.CONFIG),
    Code.NO_CREDENTIALS: Entry(
        "Not logged in", (_P.CONFIG,), "nothing in the keyring or environment for this gateway",
        "Run `tether auth login`, or set TETHER_TOKEN to an API token.",
        _R.NEVER, _X.NO_PERMISSION),
    Code.KEYRING_UNAVAILABLE: Entry(
        "No keyring available", (_P.CONFIG,), "no usable keyring backend on this machine",
        "Install and unlock a Secret Service (gnome-keyring, KeePassXC) or macOS Keychain, "
        "or set TETHER_TOKEN to an API token.",
        _R.NEVER, _X.CONFIG),
    Code.DNS_FAILURE: Entry(
        "Gateway name does not resolve", (_P.CONNECT,),
        "the gateway's host name does not resolve, or no DNS server answered",
        "Check the gateway address for a typo (`tether auth status`), and your DNS.",
        _R.BUDGET, _X.UNAVAILABLE),
    Code.CONNECTION_REFUSED: Entry(
        "Connection refused", (_P.CONNECT,), "nothing accepts connections at the gateway's port",
        "Check that the gateway is running at that host and port; to wait for one that is "
        "starting, give --retry-for (e.g. --retry-for 2m).",
        _R.BUDGET, _X.UNAVAILABLE),
    Code.CONNECT_TIMEOUT: Entry(
        "Connection timed out", (_P.CONNECT,),
        "TCP, TLS or the WebSocket handshake did not finish in time",
        "Check the network, any proxy (HTTPS_PROXY, NO_PROXY) and firewalls on the way; "
        "--connect-timeout sets the limit.",
        _R.BUDGET, _X.UNAVAILABLE),
    Code.NETWORK_UNREACHABLE: Entry(
        "Network unreachable", (_P.CONNECT,), "no route to the gateway (ENETUNREACH, EHOSTUNREACH)",
        "This machine's network is down or has no route to the gateway; "
        "check your connection or VPN.",
        _R.BUDGET, _X.UNAVAILABLE),
    Code.TLS_ERROR: Entry(
        "TLS verification failed", (_P.CONNECT,),
        "the certificate could not be verified, names another host, or TLS was refused",
        "If the gateway uses a private CA, pass --ca-cert FILE or set SSL_CERT_FILE.",
        _R.NEVER, _X.CONFIG),
    Code.PROXY_ERROR: Entry(
        "Proxy refused the connection", (_P.CONNECT,),
        "the HTTP proxy refused the tunnel or asked for authentication (407)",
        "Check HTTPS_PROXY, HTTP_PROXY and NO_PROXY; put the gateway in NO_PROXY to bypass it.",
        _R.NEVER, _X.CONFIG),
    Code.INVALID_REQUEST: Entry(
        "Request rejected", (_P.HANDSHAKE,), "the gateway answered 400: bad or missing parameters",
        "Read the gateway's detail above; check the service name and options.",
        _R.NEVER, _X.USAGE),
    Code.UNAUTHORIZED: Entry(
        "Not authenticated", (_P.HANDSHAKE, _P.SESSION),
        "401, or close 1008 after one refresh: the credential was not accepted",
        _LOGIN, _R.REFRESH_ONCE, _X.NO_PERMISSION),
    Code.TOKEN_EXPIRED: Entry(
        "Token expired", (_P.CREDENTIALS, _P.HANDSHAKE, _P.SESSION),
        "the token's expiry is past; 401 invalid_token \"expired\"; close 1008 \"expired\"",
        _LOGIN, _R.REFRESH_ONCE, _X.NO_PERMISSION),
    Code.REFRESH_FAILED: Entry(
        "Could not refresh the token", (_P.CREDENTIALS,),
        "the token endpoint answered invalid_grant, or failed",
        "Run `tether auth login` to sign in again.",
        _R.NEVER, _X.NO_PERMISSION),
    Code.PERMISSION_DENIED: Entry(
        "Permission denied", (_P.HANDSHAKE, _P.SESSION),
        "403, or close 1007: the credential is valid but its role does not allow this",
        "Ask an Admin of the gateway for the role this command needs.",
        _R.REFRESH_ONCE, _X.NO_PERMISSION),
    Code.NOT_FOUND: Entry(
        "Not found", (_P.HANDSHAKE, _P.SESSION), "404 or close 4404: unknown service or instance",
        "Check the service name; `tether status` lists the services the gateway knows.",
        _R.NEVER, _X.UNAVAILABLE),
    Code.PORT_NOT_FORWARDED: Entry(
        "Port not open for forwarding", (_P.HANDSHAKE, _P.SESSION),
        "422 or close 4422 port-not-forwarded: the service does not open that port for "
        "port-forward",
        "Forward one of the service's open ports: the message names them, and "
        "`tether status SERVICE` lists them.",
        _R.NEVER, _X.UNAVAILABLE),
    Code.RATE_LIMITED: Entry(
        "Rate limited", (_P.HANDSHAKE, _P.SESSION), "429 or close 4429",
        "Wait before trying again; tether waits at least as long as the gateway asks.",
        _R.BACKOFF, _X.TEMPORARY),
    Code.GATEWAY_ERROR: Entry(
        "Gateway error", (_P.HANDSHAKE,), "500: the gateway failed",
        "If it persists, report it to the gateway's operators with the request id.",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.GATEWAY_UNAVAILABLE: Entry(
        "Gateway unavailable", (_P.HANDSHAKE,), "503: the gateway is at capacity or in maintenance",
        "Wait and try again; the gateway is at capacity or in maintenance.",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.GATEWAY_UNREACHABLE: Entry(
        "Gateway unreachable behind a proxy", (_P.HANDSHAKE,),
        "a reverse proxy or load balancer in front of the gateway (nginx, HAProxy, ...) "
        "answered 502, 503 or 504 itself, not with the gateway's problem+json: the gateway "
        "behind it is down, unreachable from it, or too slow",
        "Check that the gateway behind the proxy is running and that the proxy points at it; "
        "tether retries meanwhile.",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.STATE_UNAVAILABLE: Entry(
        "Gateway state unavailable", (_P.HANDSHAKE,),
        "503 state-unavailable: the gateway cannot reach its state database, or it is too slow",
        "Nothing to do: tether retries. If it persists, the gateway's operators should check "
        "its state database (`tether gateway serve --state`).",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.BACKEND_UNAVAILABLE: Entry(
        "Backend unavailable", (_P.HANDSHAKE, _P.SESSION),
        "502, 504 or close 1011: the cluster, agent or host behind the service is not answering",
        "Verify that the cluster hosting the service is running and healthy "
        "(`tether status SERVICE`).",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.AGENT_TIMEOUT: Entry(
        "Agent timed out", (_P.SESSION,),
        "close 1011 with a timeout reason: the agent could not reach the pod in time",
        "The agent could not reach the service's pod in time; retrying. If it persists, "
        "check the pod with `tether status SERVICE`.",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.GATEWAY_RESTARTING: Entry(
        "Gateway restarting", (_P.SESSION,), "close 1001 or 1012: the gateway is going away",
        "Nothing to do: tether reconnects.",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.OVERLOADED: Entry(
        "Gateway overloaded", (_P.SESSION,), "close 1013: try again later",
        "Nothing to do: tether backs off and reconnects.",
        _R.BACKOFF, _X.TEMPORARY),
    Code.CONNECTION_LOST: Entry(
        "Connection lost", (_P.SESSION,),
        "the connection dropped without a close frame (1006, EOF, reset, broken pipe)",
        "Check the network between here and the gateway; tether reconnects.",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.KEEPALIVE_TIMEOUT: Entry(
        "Connection went silent", (_P.SESSION,),
        "nothing, not even a pong, arrived within the keepalive limit",
        "The network path stopped carrying data; tether reconnects. "
        "--keepalive-timeout sets the limit.",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.SESSION_EXPIRED: Entry(
        "Session expired", (_P.SESSION,),
        "close 4410 on a resume: the gateway no longer has the session (its grace period "
        "ended, it was ended, or the gateway restarted); the remote state is lost",
        "The remote shell and what ran in it are gone; tether opens a new one. If cuts last "
        "longer, the gateway's operators can raise [gateway] resume_grace.",
        _R.BACKOFF, _X.UNAVAILABLE),
    Code.RESUME_LOST: Entry(
        "Output lost", (_P.SESSION,),
        "close 4416 on a resume: while detached, more output came than the gateway's replay "
        "buffer holds; the reason says how many bytes were lost",
        "The session was ended rather than shown with a gap. The gateway's operators can raise "
        "[gateway] resume_buffer; redirect large output to a file.",
        _R.NEVER, _X.DATA),
    Code.TARGET_UNREACHABLE: Entry(
        "Target port unreachable", (_P.SESSION,),
        "port-forward: the gateway could not connect to the service's port "
        "(1011 target-unreachable)",
        "Check that the service is listening on that port.",
        _R.PER_CONNECTION, _X.UNAVAILABLE),
    Code.MESSAGE_TOO_BIG: Entry(
        "Message too big", (_P.SESSION,), "close 1009: a message exceeded the peer's limit",
        "Send smaller pieces; if it persists, report it with the request id.",
        _R.NEVER, _X.DATA),
    Code.PROTOCOL_ERROR: Entry(
        "Protocol error", (_P.HANDSHAKE, _P.SESSION),
        "close 1002 or 1003, a control message that is not valid JSON or has an unknown type, "
        "or an answer that is not a WebSocket",
        "The URL may not point at a tether gateway; check --gateway / TETHER_GATEWAY.",
        _R.NEVER, _X.DATA),
    Code.UNEXPECTED_STATUS: Entry(
        "Unexpected answer", (_P.HANDSHAKE,),
        "any other HTTP status (a redirect to a login page, 405, ...)",
        "The URL may not point at a tether gateway; check --gateway / TETHER_GATEWAY.",
        _R.NEVER, _X.UNAVAILABLE),
    Code.LOCAL_PORT_IN_USE: Entry(
        "Local port unavailable", (_P.LOCAL,), "binding the local port failed (EADDRINUSE, EACCES)",
        "Pick another local port (LOCAL:REMOTE), or write :REMOTE to get a free one.",
        _R.NEVER, _X.LOCAL_OS),
    Code.INTERRUPTED: Entry(
        "Interrupted", (_P.LOCAL,), "Ctrl+C, SIGTERM or SIGHUP",
        "", _R.NEVER, _X.INTERRUPTED),
    Code.INTERNAL_ERROR: Entry(
        "Internal error", tuple(Phase),
        "a bug in tether",
        "This is a bug in tether. Run again with --verbose and report the output "
        "(with the request id, if any).",
        _R.NEVER, _X.INTERNAL),
}


@dataclass(frozen=True)
class Failure:
    """One failure, classified. Peer text in it is untrusted until rendered."""

    code: Code
    phase: Phase
    message: str  # what happened, with the specifics
    title: str = ""  # defaults to the catalog's
    hint: str = ""  # defaults to the catalog's
    retryable: bool = False  # transient: worth retrying under the policy
    exit_code: int = ExitStatus.INTERNAL
    http_status: int | None = None
    close_code: int | None = None
    close_reason: str | None = None
    problem_code: str | None = None
    problem_title: str | None = None
    problem_detail: str | None = None
    required_role: str | None = None
    retry_after: float | None = None  # seconds
    request_id: str | None = None
    answered_by: str | None = None  # a proxy or portal that answered instead of the gateway
    url: str | None = None  # always redacted
    attempts: int | None = None
    cause: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, code: Code, phase: Phase, message: str, **fields: Any) -> Failure:
        """A Failure with the catalog's defaults for ``code``, overridden by ``fields``."""
        entry = CATALOG[code]
        fields.setdefault("title", entry.title)
        fields.setdefault("hint", entry.hint)
        fields.setdefault("retryable", entry.retry in (Retry.BUDGET, Retry.BACKOFF,
                                                      Retry.PER_CONNECTION))
        fields.setdefault("exit_code", int(entry.exit_status))
        return cls(code=code, phase=phase, message=message, **fields)

    @property
    def retry(self) -> Retry:
        """The catalog's retry class for this code."""
        return CATALOG[self.code].retry

    def replace(self, **changes: Any) -> Failure:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Every field that was seen, for JSON output; ``cause`` is left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "cause":
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = str(value) if isinstance(value, enum.Enum) else value
        return out

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TetherError(Exception):
    """Raised when any tether operation fails; carries the classified Failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


class Interrupted(TetherError):
    """Raised when the user pressed Ctrl+C, or the process got SIGTERM or SIGHUP."""

    def __init__(self, signal_name: str = "SIGINT") -> None:
        status = {"SIGTERM": ExitStatus.TERMINATED, "SIGHUP": ExitStatus.HANGUP}.get(
            signal_name, ExitStatus.INTERRUPTED)
        super().__init__(Failure.of(Code.INTERRUPTED, Phase.LOCAL, f"interrupted ({signal_name})",
                                    exit_code=int(status)))
