"""Warren's shared core: contracts, errors, settings, codec, registry, client and CLI."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    # The client pulls in pika and redis; importing `warren` alone (as the sandbox runtime
    # does for nothing but contracts) must stay cheap.
    if name == "Client":
        from warren.client import Client

        return Client
    raise AttributeError(name)
