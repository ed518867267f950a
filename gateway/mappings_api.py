"""Lambda's event source mapping operations; EventSourceArn carries a Warren source URI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from gateway.api import Call, operation
from gateway.errors import invalid
from gateway.invoke_api import split_function_name
from gateway.shapes import page
from warren.aws import function_arn
from warren.mapping import MappingSpec

MAPPINGS = "/2015-03-31/event-source-mappings"
ONE = MAPPINGS + "/{UUID}"
REPORT_FAILURES = "ReportBatchItemFailures"


def _epoch(iso: str) -> float:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def _position_out(position: str) -> str:
    return position.split(":", 1)[0].upper().replace("-", "_")


def configuration(spec: MappingSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "UUID": spec.uuid,
        "BatchSize": spec.batch_size,
        "MaximumBatchingWindowInSeconds": int(spec.window_s),
        "EventSourceArn": spec.source,
        "FunctionArn": function_arn(spec.function_name, spec.qualifier),
        "LastModified": _epoch(spec.last_modified),
        "LastProcessingResult": "No records processed",
        "State": spec.state,
        "StateTransitionReason": spec.state_reason,
        "BisectBatchOnFunctionError": spec.bisect,
        "MaximumRetryAttempts": spec.max_retries,
        "MaximumRecordAgeInSeconds": spec.max_age_s,
        "ParallelizationFactor": spec.parallelization_factor,
        "FunctionResponseTypes": [REPORT_FAILURES] if spec.report_item_failures else [],
        "FilterCriteria": {"Filters": [{"Pattern": p} for p in spec.filters]},
        "DestinationConfig": (
            {"OnFailure": {"Destination": spec.on_failure}} if spec.on_failure else {}
        ),
    }
    if spec.kind in ("stream",):
        out["StartingPosition"] = _position_out(spec.start_position)
    if spec.max_concurrency is not None:
        out["ScalingConfig"] = {"MaximumConcurrency": spec.max_concurrency}
    return out


def _function(raw: Any) -> str:
    name, qualifier = split_function_name(str(raw or ""))
    return f"{name}:{qualifier}" if qualifier else name


def _options(body: dict[str, Any]) -> dict[str, Any]:
    """Lambda's fields as MappingStore's keyword arguments (only the ones given)."""
    out: dict[str, Any] = {}
    simple = (
        ("BatchSize", "batch_size"),
        ("MaximumBatchingWindowInSeconds", "window_s"),
        ("BisectBatchOnFunctionError", "bisect"),
        ("MaximumRetryAttempts", "max_retries"),
        ("MaximumRecordAgeInSeconds", "max_age_s"),
        ("ParallelizationFactor", "parallelization_factor"),
    )
    for field, key in simple:
        if body.get(field) is not None:
            out[key] = body[field]
    if "FunctionResponseTypes" in body:
        out["report_item_failures"] = REPORT_FAILURES in (body["FunctionResponseTypes"] or [])
    if "FilterCriteria" in body:
        filters = (body["FilterCriteria"] or {}).get("Filters") or []
        out["filters"] = [str(f.get("Pattern", "")) for f in filters if isinstance(f, dict)]
    if "DestinationConfig" in body:
        failure = ((body["DestinationConfig"] or {}).get("OnFailure") or {}).get("Destination")
        out["on_failure"] = failure or None
    if "ScalingConfig" in body:
        out["max_concurrency"] = (body["ScalingConfig"] or {}).get("MaximumConcurrency")
    return out


def _start_position(body: dict[str, Any]) -> str:
    raw = str(body.get("StartingPosition") or "TRIM_HORIZON")
    position = raw.lower().replace("_", "-")
    if position == "at-timestamp":
        stamp = body.get("StartingPositionTimestamp")
        if stamp is None:
            raise invalid("AT_TIMESTAMP needs StartingPositionTimestamp")
        position += f":{stamp}"
    return position


@operation()
async def create_mapping(call: Call) -> Response:
    body = call.json()
    source = body.get("EventSourceArn")
    if not source:
        raise invalid("EventSourceArn (a Warren source URI) is required")
    spec = await call.blocking(
        call.gateway.mappings.create,
        function=_function(body.get("FunctionName")),
        source=str(source),
        start_position=_start_position(body),
        enabled=bool(body.get("Enabled", True)),
        **_options(body),
    )
    return call.respond(configuration(spec), 202)


@operation()
async def get_mapping(call: Call) -> Response:
    spec = await call.blocking(call.gateway.mappings.get, call.path("UUID"))
    return call.respond(configuration(spec))


@operation()
async def update_mapping(call: Call) -> Response:
    body = call.json()
    store = call.gateway.mappings
    mapping_id = call.path("UUID")
    changes = _options(body)
    if body.get("FunctionName"):
        changes["function"] = _function(body["FunctionName"])
    spec = await call.blocking(store.get, mapping_id)
    if changes:
        spec = await call.blocking(store.update, mapping_id, **changes)
    if "Enabled" in body:
        toggle = store.enable if body["Enabled"] else store.disable
        spec = await call.blocking(toggle, mapping_id)
    return call.respond(configuration(spec), 202)


@operation()
async def delete_mapping(call: Call) -> Response:
    spec = await call.blocking(call.gateway.mappings.delete, call.path("UUID"))
    return call.respond(configuration(spec), 202)


@operation()
async def list_mappings(call: Call) -> Response:
    function = call.query("FunctionName")
    name = _function(function).split(":", 1)[0] if function else None
    specs = await call.blocking(call.gateway.mappings.list_mappings, name)
    source = call.query("EventSourceArn")
    if source:
        specs = [s for s in specs if s.source == source]
    chunk, marker = page(specs, call.query("Marker"), call.query("MaxItems"))
    out: dict[str, Any] = {"EventSourceMappings": [configuration(s) for s in chunk]}
    if marker:
        out["NextMarker"] = marker
    return call.respond(out)


ROUTES = [
    Route(MAPPINGS, create_mapping, methods=["POST"]),
    Route(MAPPINGS, list_mappings, methods=["GET"]),
    Route(MAPPINGS + "/", list_mappings, methods=["GET"]),
    Route(ONE, get_mapping, methods=["GET"]),
    Route(ONE, update_mapping, methods=["PUT"]),
    Route(ONE, delete_mapping, methods=["DELETE"]),
]
