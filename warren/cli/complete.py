"""Shell completion of function names and mapping ids, read from the fleet's Redis.

Completion runs before any command (and before the root builds its settings), so it reads
WARREN_REDIS_URL and WARREN_PREFIX itself; an unreachable Redis completes nothing, quietly.
"""

from __future__ import annotations

import os

import click
from click.shell_completion import CompletionItem


def _members(key_of: str) -> list[str]:
    from warren.keys import Keys
    from warren.settings import Settings
    from warren.store.redis import connect

    try:
        settings = Settings.from_environ(os.environ)
        client = connect(settings.redis, connect_timeout_s=0.5)
        try:
            keys = Keys(settings.prefix)
            raw = client.smembers(keys.functions if key_of == "functions" else keys.mappings)
        finally:
            client.close()
    except Exception:  # completion must never print a traceback into the shell
        return []
    return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw)


def function_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return [CompletionItem(n) for n in _members("functions") if n.startswith(incomplete)]


def mapping_ids(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    return [CompletionItem(m) for m in _members("mappings") if m.startswith(incomplete)]
