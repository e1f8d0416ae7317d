"""Turn what the peer or the network did into one :class:`~tether.errors.Failure`. Pure.

The entry points, one per way a dial or a session can end badly:

- :func:`classify_handshake`: an HTTP answer that refused the upgrade (status,
  headers, body);
- :func:`classify_close`: a close frame after the upgrade (code, reason);
- :func:`classify_proxy_refusal` / :func:`classify_proxy_unreachable`: a forward
  proxy that refused the tunnel, or could not be reached;
- :func:`classify_exception`: an exception from the socket, TLS or
  websocket-client, unwrapped along its ``__cause__``/``__context__`` chain;
  :func:`classified` raises any exception of a block as ``TetherError`` from it.

None of them does I/O and none of them raises: any input, however odd, gives a
Failure with a sensible code. Peer text (problem details, close reasons,
header values) is cleaned and cut to a bounded length before it is stored;
URLs are redacted.

The parts: :mod:`~tether.classify.status` (what statuses and close codes say,
as tables), :mod:`~tether.classify.peer` (handshake answers and close frames),
:mod:`~tether.classify.middlebox` (who answered: the gateway or a proxy in front
of it), :mod:`~tether.classify.exceptions` (exception classes to codes),
:mod:`~tether.classify.wording` (one formatter per code and per situation) and
:mod:`~tether.classify.httpparse` (problem bodies, ``WWW-Authenticate``,
``Retry-After``). Importing this package imports neither websocket-client nor
python-socks.
"""

from tether.classify.exceptions import (
    classified,
    classify_exception,
    exception_map,
    name_does_not_exist,
)
from tether.classify.httpparse import (
    MAX_BODY,
    MAX_RETRY_AFTER,
    Challenge,
    Problem,
    parse_problem,
    parse_retry_after,
    parse_www_authenticate,
)
from tether.classify.peer import (
    classify_close,
    classify_handshake,
    classify_proxy_refusal,
    classify_proxy_unreachable,
)

__all__ = [
    "MAX_BODY",
    "MAX_RETRY_AFTER",
    "Challenge",
    "Problem",
    "classified",
    "classify_close",
    "classify_exception",
    "classify_handshake",
    "classify_proxy_refusal",
    "classify_proxy_unreachable",
    "exception_map",
    "name_does_not_exist",
    "parse_problem",
    "parse_retry_after",
    "parse_www_authenticate",
]
