"""How read commands print: `-o table` for people, `-o json` (or `-o yaml`) for scripts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
import orjson

FORMATS = ("table", "json", "yaml")

output_option = click.option(
    "--output",
    "-o",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="table for people; json or yaml for scripts.",
)


def render(obj: Any, output: str = "table") -> str:
    """A dict (one record) or a list of dicts (rows) as an aligned table or as JSON text."""
    if output == "json":
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    if output == "yaml":
        import yaml  # only when asked: it is not cheap to import

        plain = orjson.loads(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS))
        return str(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)).rstrip("\n")
    if isinstance(obj, Mapping):
        rows = [[key, _cell(value)] for key, value in _flatten(obj)]
        return _table(rows, header=None)
    if isinstance(obj, (list, tuple)):
        if not obj:
            return "(none)"
        columns: list[str] = []
        for row in obj:
            columns.extend(k for k in row if k not in columns)
        rows = [[_cell(row.get(c)) for c in columns] for row in obj]
        return _table(rows, header=[c.upper() for c in columns])
    return _cell(obj)


def echo(obj: Any, output: str = "table") -> None:
    click.echo(render(obj, output))


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in obj.items():
        if isinstance(value, Mapping) and value:
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list, tuple)):
        return orjson.dumps(value).decode() if value else "-"
    return str(value)


def _table(rows: list[list[str]], header: list[str] | None) -> str:
    lines = ([header] if header else []) + rows
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))] if lines else []
    out = ("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines)
    return "\n".join(line.rstrip() for line in out)
