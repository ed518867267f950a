"""`warren usage` and `warren cost`: metered requests and GB-seconds; what Lambda would charge."""

from __future__ import annotations

from typing import Any

import click

from warren.cli.complete import function_names
from warren.cli.logs import parse_since
from warren.cli.output import echo, output_option
from warren.cli.root import Root, pass_root
from warren.store.usage import usage_document
from warren.usage import Usage

since_option = click.option(
    "--since", default="30d", show_default=True, help="The window: 90m, 12h, 30d (whole hours)."
)


def _rows(root: Root, since_s: float, name: str | None) -> tuple[list[Any], dict[str, Any]]:
    from warren.store.redis import connect, redis_errors
    from warren.store.usage import UsageStore

    client = connect(root.settings.redis)
    try:
        with redis_errors("usage", client):
            if name is not None:
                from warren.errors import NotFound
                from warren.keys import Keys

                if not client.exists(Keys(root.settings.prefix).function(name)):
                    raise NotFound(f"Function not found: {name}")
            rows = UsageStore(client, root.settings.prefix).read(since_s, name)
            workers = _workers(client, root.settings.prefix)
    finally:
        client.close()
    return rows, workers


def _workers(client: Any, prefix: str) -> dict[str, Any]:
    from warren.keys import Keys

    slots = count = 0
    for key in client.scan_iter(Keys(prefix).workers_pattern, count=500):
        raw = client.hget(key, "slots")
        if raw is not None:
            count += 1
            slots += int(raw)
    return {"workers_now": count, "slots_now": slots}


@click.command("usage")
@click.argument("name", required=False, shell_complete=function_names)
@since_option
@output_option
@pass_root
def usage_command(root: Root, name: str | None, since: str, output: str) -> None:
    """Metered requests, errors, GB-seconds and p50/p99 duration, per function and version."""
    since_s = parse_since(since) or 0.0
    rows, _ = _rows(root, since_s, name)
    document = usage_document(rows, since, since_s)
    if output != "table":
        echo(document, output)
        return
    table = [
        {"function": fn, "version": ver, **{k: v for k, v in summary.items()}}
        for fn, entry in document["functions"].items()
        for ver, summary in entry["versions"].items()
    ]
    echo(table, "table")
    click.echo(
        f"\nTOTAL  requests {document['requests']}  errors {document['errors']}  "
        f"GB-s {document['gb_seconds']}  p50 {document['duration_p50_ms']} ms  "
        f"p99 {document['duration_p99_ms']} ms  (last {since})"
    )


@click.command("cost")
@since_option
@click.option(
    "--arch", type=click.Choice(["x86_64", "arm64"]), default="x86_64", show_default=True,
    help="Which Lambda architecture's prices.",
)
@click.option(
    "--free-tier/--no-free-tier", default=True, show_default=True,
    help="Take Lambda's monthly free tier off (scaled to the window).",
)
@output_option
@pass_root
def cost_command(root: Root, since: str, arch: str, free_tier: bool, output: str) -> None:
    """What the metered usage would have cost on AWS Lambda, beside the fleet's own use."""
    from warren.pricing import Prices, busy_seconds, cost_report

    since_s = parse_since(since) or 0.0
    rows, workers = _rows(root, since_s, None)
    per_function: dict[str, Usage] = {}
    for row in rows:
        per_function.setdefault(row.function, Usage()).merge(row.usage)
    report = cost_report(
        per_function, Prices.load(), arch=arch, free_tier=free_tier, window_s=since_s
    )
    busy = sum(busy_seconds(u) for u in per_function.values())
    capacity = workers["slots_now"] * since_s
    report["fleet"] = {
        **workers,
        "busy_slot_seconds": round(busy, 3),
        # What share of the window the slots that run now were busy (slots vary over time).
        "utilization_at_current_slots": round(busy / capacity, 6) if capacity else None,
    }
    if output != "table":
        echo(report, output)
        return
    table = [{"function": name, **entry} for name, entry in report["functions"].items()]
    echo(table, "table")
    fleet = report["fleet"]
    click.echo(
        f"\nTOTAL  requests {report['requests']}  GB-s {report['gb_seconds']}  "
        f"init GB-s {report['init_gb_seconds']}  Lambda ${report['lambda_usd']:.4f} "
        f"({arch}, {'free tier off' if not free_tier else 'after free tier'}, "
        f"prices read {report['prices']['read_on']})"
    )
    click.echo(
        f"FLEET  {fleet['workers_now']} workers, {fleet['slots_now']} slots now; "
        f"slots busy {fleet['busy_slot_seconds']} s in the last {since}"
    )


COMMANDS = [usage_command, cost_command]
