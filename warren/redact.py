"""Credentials never shown: passwords in URLs (a source URI, an error quoting one) are masked."""

from __future__ import annotations

import re
from typing import Any

# scheme://user:password@  and  ?...secret=...&  (an S3 endpoint's or a source's query)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s]*:)(?P<secret>[^@\s/]+)@")
_QUERY = re.compile(
    r"(?P<head>[?&](?:password|secret|secret_key|aws_secret_access_key|token|key)=)"
    r"(?P<secret>[^&\s]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with every URL password and secret-looking query value replaced by ***."""
    text = _USERINFO.sub(lambda m: f"{m.group('head')}***@", text)
    return _QUERY.sub(lambda m: f"{m.group('head')}***", text)


def redact_all(value: Any) -> Any:
    """`redact` applied to every string inside a JSON-like value (for --output json)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_all(v) for v in value]
    return value
