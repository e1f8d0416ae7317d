"""Making untrusted text safe to show: control characters and secrets out."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# ANSI escape sequences (CSI, OSC, and two-byte ESC forms), then any C0/C1
# control character, DEL, and the Unicode bidi overrides that can reorder text.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI ... final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST
    r"|\x1b[@-Z\\-_]"  # two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"  # 8-bit CSI
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NEWLINES = re.compile(r"[\t\n]")

SECRET_QUERY_KEYS = frozenset({"token", "access_token", "refresh_token", "id_token", "jwt",
                               "auth", "authorization", "key", "api_key", "apikey",
                               "password", "secret", "sig", "signature"})
REDACTED = "REDACTED"


def strip_control(text: str, *, keep_newlines: bool = False, limit: int = 4096) -> str:
    """``text`` without escape sequences or control characters, cut to ``limit`` characters.

    Tabs and newlines become spaces unless ``keep_newlines``.
    """
    cleaned = _CONTROLS.sub("", _ESCAPES.sub("", text[: limit * 2]))
    if not keep_newlines:
        cleaned = _NEWLINES.sub(" ", cleaned)
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


def redact_url(url: str) -> str:
    """``url`` with any password and any secret-looking query value replaced by REDACTED."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
        query = urlencode([(k, REDACTED if k.lower() in SECRET_QUERY_KEYS else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                          safe="/:,")
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<unparseable URL>"


# Secrets that may hide in any text: bearer credentials, tether API tokens,
# JWTs, and ``key=value`` or ``"key": "value"`` pairs whose key names a secret.
_SENSITIVE_NAMES = (r"access_token|refresh_token|id_token|device_code|client_secret|api_key|apikey"
                r"|password|passwd|secret|token|jwt|authorization")
_SECRET_PATTERNS = (
    (re.compile(r"(?i)\b(bearer)(\s+)(?![A-Za-z_]+=\")[A-Za-z0-9\-._~+/]+=*"), rf"\1\2{REDACTED}"),
    (re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?)(basic|digest|negotiate)\s+"
                r"[^\s\"',;]+"), rf"\1\2 {REDACTED}"),
    (re.compile(r"\btth_[A-Za-z0-9_\-]+"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), REDACTED),
    (re.compile(rf"(?i)\b({_SENSITIVE_NAMES})(=|[\"']\s*:\s*[\"']?)"
                rf"(?!{REDACTED}\b)[^\s\"'&,;}}]+"), rf"\1\2{REDACTED}"),
)


def redact_secrets(text: str) -> str:
    """``text`` with bearer values, ``tth_`` tokens, JWTs and secret-named values replaced."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text
