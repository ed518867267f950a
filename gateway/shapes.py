"""Warren's records in the JSON shapes of Lambda's API: FunctionConfiguration, aliases, pages."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from gateway.errors import invalid
from warren.aws import ACCOUNT_ID, REGION
from warren.function import LATEST, Alias, AsyncConfig, FunctionSpec

ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/warren-function"  # Warren has no IAM; a fixed stand-in


def lambda_time(iso: str) -> str:
    """Lambda's LastModified: `2024-01-02T03:04:05.678+0000`."""
    if iso.endswith("+00:00"):
        return iso[:-6] + "+0000"
    if iso.endswith("Z"):
        return iso[:-1] + "+0000"
    return iso


def code_sha256(hex_digest: str) -> str:
    """Lambda gives CodeSha256 as base64 of the digest; the registry keeps hex."""
    try:
        return base64.b64encode(bytes.fromhex(hex_digest)).decode()
    except ValueError:
        return hex_digest


def revision(spec: FunctionSpec) -> str:
    digest = hashlib.sha256(spec.fingerprint() + spec.last_modified.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def function_configuration(spec: FunctionSpec) -> dict[str, Any]:
    arn = spec.arn if spec.version == LATEST else spec.qualified_arn
    return {
        "FunctionName": spec.name,
        "FunctionArn": arn,
        "Runtime": spec.runtime,
        "Role": ROLE,
        "Handler": spec.handler,
        "CodeSize": spec.code_size,
        "Description": spec.description,
        "Timeout": spec.timeout_s,
        "MemorySize": spec.memory_mb,
        "LastModified": lambda_time(spec.last_modified),
        "CodeSha256": code_sha256(spec.code_sha256),
        "Version": spec.version,
        "Environment": {"Variables": dict(spec.env)},
        "TracingConfig": {"Mode": "PassThrough"},
        "RevisionId": revision(spec),
        # Writes are done when the registry's transaction is: a function is never Pending.
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": ["x86_64"],
        "EphemeralStorage": {"Size": spec.ephemeral_storage_mb},
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{spec.name}"},
        "Layers": [{"Arn": x.arn, "CodeSize": x.code_size} for x in spec.layers],
    }


def alias_configuration(alias: Alias) -> dict[str, Any]:
    body: dict[str, Any] = {
        "AliasArn": alias.arn,
        "Name": alias.name,
        "FunctionVersion": alias.version,
        "Description": alias.description,
        "RevisionId": hashlib.sha256(repr(alias.to_dict()).encode()).hexdigest()[:36],
    }
    if alias.weights:
        body["RoutingConfig"] = {"AdditionalVersionWeights": dict(alias.weights)}
    return body


def event_invoke_config(spec: FunctionSpec, qualifier: str | None) -> dict[str, Any]:
    config: AsyncConfig = spec.async_config
    destinations: dict[str, Any] = {}
    if config.on_success:
        destinations["OnSuccess"] = {"Destination": config.on_success}
    if config.on_failure:
        destinations["OnFailure"] = {"Destination": config.on_failure}
    return {
        "LastModified": 0,
        "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{spec.name}:"
        + (qualifier or LATEST),
        "MaximumRetryAttempts": config.max_retries,
        "MaximumEventAgeInSeconds": config.max_event_age_s,
        "DestinationConfig": destinations,
    }


def page(
    items: list[Any], marker: str | None, max_items: str | None
) -> tuple[list[Any], str | None]:
    """Lambda's Marker/MaxItems pagination; the marker is the index of the next item."""
    try:
        start = int(marker) if marker else 0
        size = int(max_items) if max_items else 50
    except ValueError:
        raise invalid("Marker and MaxItems must be numbers this server gave out") from None
    size = max(1, min(size, 10_000))
    chunk = items[start : start + size]
    more = start + size < len(items)
    return chunk, str(start + size) if more else None
