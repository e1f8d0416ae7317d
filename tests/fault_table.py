"""The fault matrix: which catalog code is produced by which real fault, and the README table.

``CASES`` is the single source: ``tests/e2e/test_fault_matrix.py`` is
parametrized from it (one test per case, each run through the installed CLI),
and the README's "Fault coverage" table is generated from it, so the table
cannot claim a case that is not run. ``NOT_COVERED`` names every code without a
case and says why; a test checks that the two together cover the whole catalog.

    .venv/bin/python -m tests.fault_table           # print the table
    .venv/bin/python -m tests.fault_table --write   # update README.md between the markers
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from tether.errors import CATALOG, Code

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- faults:start -->"
END = "<!-- faults:end -->"

#: global options of runs where the code is transient: a short budget, so that the run ends.
SHORT = ("--retry-for", "1s", "--connect-timeout", "1s")


@dataclass(frozen=True)
class FaultCase:
    """One real fault and what tether must make of it.

    ``dials`` is "0" (refused before any network), "1" (permanent), "2" (one
    refresh of a stored login, then the same refusal), "1+1" (port-forward's
    check at start, then one per local connection) or ">1" (transient: as many
    as the retry budget allows, at least two). ``final`` is False when the code
    is reported as an event of a run that goes on (ended with Ctrl+C).
    """

    code: Code
    produced_by: str
    args: tuple[str, ...]  # after the global options; PORT, TAKEN, CA_FILE: made by the test
    exit_status: int
    dials: str
    options: tuple[str, ...] = ()  # global options (``-o json`` is always added)
    final: bool = True
    variant: str = ""  # tells apart two cases of one code

    @property
    def id(self) -> str:
        return f"{self.code}-{self.variant}" if self.variant else str(self.code)

    @property
    def command(self) -> str:
        return shlex.join(("tether", *self.options, *self.args))

    def exact_dials(self) -> int | None:
        """The number of dials when it is fixed; None for ">1"."""
        if self.dials == ">1":
            return None
        return sum(int(part) for part in self.dials.split("+"))

    def budget_seconds(self) -> float:
        """The ``--retry-for`` of this run, 0 when it does not retry."""
        if "--retry-for" not in self.options:
            return 0.0
        value = self.options[self.options.index("--retry-for") + 1]
        return float(value.removesuffix("s"))


_C = Code
CASES: tuple[FaultCase, ...] = (
    FaultCase(_C.USAGE_ERROR, "an option `logs` does not have (a running gateway is never dialed)",
              ("logs", "api", "--bogus"), 2, "0"),
    FaultCase(_C.NOT_CONFIGURED, "no TETHER_GATEWAY and no saved gateway",
              ("logs", "api"), 78, "0"),
    FaultCase(_C.UNKNOWN_CONTEXT, "--context names a context the config file does not have "
              "(it has `prod`, whose gateway runs)", ("logs", "api"), 78, "0",
              ("--context", "nope")),
    FaultCase(_C.INVALID_URL, "TETHER_GATEWAY=gopher://… (a scheme that is not ws/wss/http/https)",
              ("logs", "api"), 78, "0"),
    FaultCase(_C.NO_CREDENTIALS, "a running gateway, no TETHER_TOKEN, an empty file keyring",
              ("logs", "api"), 77, "0"),
    FaultCase(_C.KEYRING_UNAVAILABLE,
              "no TETHER_TOKEN and the keyring backend `keyring.backends.fail.Keyring`",
              ("logs", "api"), 78, "0"),
    FaultCase(_C.DNS_FAILURE, "gateway host `tether-gw.invalid` (RFC 6761: never resolves); "
              "first contact fails at once",
              ("logs", "api"), 69, "1", ("--connect-timeout", "1s")),
    FaultCase(_C.DNS_FAILURE, "the same, with an explicit --retry-for (waiting for a gateway)",
              ("logs", "api"), 69, ">1", SHORT, variant="retry-for"),
    FaultCase(_C.CONNECTION_REFUSED, "a loopback port nothing listens on; first contact fails "
              "at once", ("logs", "api"), 69, "1", ("--connect-timeout", "1s")),
    FaultCase(_C.CONNECTION_REFUSED, "the same, with an explicit --retry-for (waiting for a "
              "gateway)", ("logs", "api"), 69, ">1", SHORT, variant="retry-for"),
    FaultCase(_C.CONNECT_TIMEOUT, "hostile server: reads the upgrade request, never answers",
              ("logs", "api"), 69, ">1", ("--retry-for", "1s", "--connect-timeout", "0.4s")),
    FaultCase(_C.TLS_ERROR,
              "TLS server whose certificate (from the trusted --ca-cert) names another host",
              ("logs", "api"), 78, "1", ("--ca-cert", "CA_FILE")),
    FaultCase(_C.PROXY_ERROR, "HTTP_PROXY is a CONNECT proxy that answers 407",
              ("logs", "api"), 78, "1"),
    FaultCase(_C.INVALID_REQUEST, "real gateway: empty service name (400)",
              ("logs", ""), 64, "1"),
    FaultCase(_C.UNAUTHORIZED, "real gateway: TETHER_TOKEN is a JWT signed with another key (401)",
              ("logs", "api"), 77, "1"),
    FaultCase(_C.TOKEN_EXPIRED,
              "real gateway closes the stream 1008 token-expired (Faults.expire_after)",
              ("logs", "api", "-f"), 77, "1"),
    FaultCase(_C.REFRESH_FAILED,
              "stored login: the gateway refuses its access token (401), and its refresh token "
              "was already spent (invalid_grant)",
              ("logs", "api"), 77, "1"),
    FaultCase(_C.PERMISSION_DENIED,
              "stored Viewer login on shell: 403, one refresh, 403 again",
              ("shell", "api", "--", "true"), 77, "2"),
    FaultCase(_C.NOT_FOUND, "real gateway: unknown service (404)",
              ("logs", "nope"), 69, "1"),
    FaultCase(_C.PORT_NOT_FORWARDED,
              "real gateway: port-forward to a port the service does not open (422)",
              ("port-forward", "api", ":PORT"), 69, "1"),
    FaultCase(_C.RATE_LIMITED, "hostile server: 429 with Retry-After: 1, every time",
              ("logs", "api"), 75, ">1", ("--retry-for", "2.5s", "--connect-timeout", "1s")),
    FaultCase(_C.GATEWAY_ERROR, "real gateway: Faults.refuse_status = 500",
              ("logs", "api"), 69, ">1", SHORT),
    FaultCase(_C.GATEWAY_UNAVAILABLE,
              "real gateway at its session limit (session_limit=1, one session held open): 503",
              ("logs", "api"), 69, ">1", SHORT),
    FaultCase(_C.GATEWAY_UNREACHABLE,
              "nginx in front of a stopped gateway answers 502 itself (no problem+json)",
              ("logs", "api"), 69, ">1", SHORT),
    FaultCase(_C.BACKEND_UNAVAILABLE, "real gateway: backend of api down (502)",
              ("logs", "api"), 69, ">1", SHORT),
    FaultCase(_C.AGENT_TIMEOUT, "real gateway: 1011 with an agent-timeout reason after the upgrade",
              ("logs", "api"), 69, ">1", SHORT),
    FaultCase(_C.GATEWAY_RESTARTING, "real gateway closes every log stream 1012",
              ("logs", "api", "-f"), 69, ">1", SHORT),
    FaultCase(_C.OVERLOADED, "real gateway closes every log stream 1013",
              ("logs", "api", "-f"), 75, ">1", SHORT),
    FaultCase(_C.CONNECTION_LOST, "hostile server: upgrades, then drops TCP without a close frame",
              ("logs", "api", "-f"), 69, ">1", SHORT),
    FaultCase(_C.KEEPALIVE_TIMEOUT, "hostile server: upgrades, then says nothing (no pongs)",
              ("logs", "api", "-f"), 69, ">1",
              (*SHORT, "--keepalive-interval", "0.2s", "--keepalive-timeout", "0.5s")),
    FaultCase(_C.TARGET_UNREACHABLE,
              "real gateway: port-forward to an allowed port nothing listens on; one local "
              "connection, then Ctrl+C",
              ("port-forward", "api", ":PORT"), 130, "1+1", final=False),
    FaultCase(_C.MESSAGE_TOO_BIG,
              "real gateway with max_message_size 1024: 200 KB piped into a shell (1009)",
              ("shell", "api", "--", "cat"), 65, "1"),
    FaultCase(_C.PROTOCOL_ERROR, "hostile server: 200 with an HTML page instead of the upgrade",
              ("logs", "api"), 65, "1"),
    FaultCase(_C.UNEXPECTED_STATUS, "hostile server: 302 to a login page",
              ("logs", "api"), 69, "1"),
    FaultCase(_C.LOCAL_PORT_IN_USE, "port-forward to a local port another socket holds",
              ("port-forward", "api", "TAKEN:PORT"), 71, "0"),
    FaultCase(_C.INTERRUPTED, "SIGINT to a following `logs -f` (a real gateway)",
              ("logs", "api", "-f"), 130, "1"),
)

NOT_COVERED: dict[Code, str] = {
    Code.NETWORK_UNREACHABLE: "needs a route-less non-loopback address (ENETUNREACH); tests use "
                              "loopback only, so the classifier's unit tests cover it",
    Code.INTERNAL_ERROR: "only a bug in tether produces it; no real fault should",
    Code.SESSION_EXPIRED: "needs a tether.v2 session detached past the gateway's grace period; "
                          "tests/e2e/test_resume_cli.py produces it through the CLI (then a "
                          "new shell) and tests/integration/test_gateway_resume.py on the wire",
    Code.RESUME_LOST: "needs more output while detached than the gateway's replay buffer holds; "
                      "tests/e2e/test_resume_cli.py produces it through the CLI (exit 65, the "
                      "exact count of lost bytes)",
    Code.STATE_UNAVAILABLE: "needs the gateways' PostgreSQL stopped or locked mid-run; "
                            "tests/integration/test_gateways_shared.py does that to a real "
                            "cluster and checks the 503, the code and exit 69",
}


def coverage_problems() -> list[str]:
    """What is wrong with CASES and NOT_COVERED against the catalog (empty when right)."""
    problems = []
    covered = [case.code for case in CASES]
    for code in CATALOG:
        if (code in covered) == (code in NOT_COVERED):
            problems.append(f"{code}: needs exactly one of a case or a NOT_COVERED reason")
    ids = [case.id for case in CASES]
    if len(set(ids)) != len(ids):
        problems.append("two cases have the same id (a second case of a code needs a variant)")
    for case in CASES:
        expected = CATALOG[case.code].exit_status
        if case.final and case.exit_status != expected:
            problems.append(f"{case.code}: exit {case.exit_status}, catalog says {expected}")
    return problems


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table() -> str:
    """The Markdown table, between (not including) the markers."""
    rows = ["Each row is a test in `tests/e2e/test_fault_matrix.py`: the real fault below, the "
            "installed `tether` run as a subprocess with `-o json`, and the final JSON error "
            "record's `code`, the exit status, the number of dials and the time taken checked. "
            "Generated by `python -m tests.fault_table --write`.",
            "",
            "| code | produced by | command | exit | dials |",
            "|---|---|---|---|---|"]
    for case in CASES:
        exit_text = str(case.exit_status)
        if not case.final:
            exit_text += f" (Ctrl+C; reported as an event, {CATALOG[case.code].exit_status} " \
                         "is not the command's exit)"
        rows.append(f"| `{case.code}` | {_cell(case.produced_by)} | `{_cell(case.command)}` | "
                    f"{exit_text} | {case.dials} |")
    rows.append("")
    rows.append("Not produced by a real fault:")
    rows.append("")
    rows.extend(f"- `{code}`: {reason}." for code, reason in NOT_COVERED.items())
    return "\n".join(rows)


def render_readme(text: str) -> str:
    """``text`` (the README) with the table between the markers replaced."""
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README.md lacks the {START} ... {END} markers")
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    problems = coverage_problems()
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    if "--write" in argv:
        current = README.read_text(encoding="utf-8")
        updated = render_readme(current)
        if updated != current:
            README.write_text(updated, encoding="utf-8")
            print(f"updated {README}")
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
