"""Running one handler safely: fork server, limits, deadline kill, log capture, warm reuse.

The names are loaded on first use, so that the template process and the children, which import
`sandbox.runtime`, never load the caller-side modules (and their msgpack/orjson) into a handler's
interpreter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.isolation import Enforcement, Isolation
    from sandbox.outcome import Outcome
    from sandbox.sandbox import Sandbox

__all__ = ["Enforcement", "Isolation", "Outcome", "Sandbox"]

_HOMES = {
    "Sandbox": "sandbox.sandbox",
    "Outcome": "sandbox.outcome",
    "Isolation": "sandbox.isolation",
    "Enforcement": "sandbox.isolation",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sandbox' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
