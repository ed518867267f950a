"""A function's contracts: its spec, async settings and aliases, and the rules their values obey."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import orjson

from warren import codec, runtimes
from warren.aws import function_arn, iso_time
from warren.errors import InvalidParameter
from warren.layer import MAX_LAYERS, LayerRef

SPEC_KIND = "spec"  # a function spec packed alone, as a message part (`FunctionSpec.packed`)
LATEST = "$LATEST"

MEMORY_MIN_MB, MEMORY_MAX_MB = 128, 10240
TIMEOUT_MIN_S, TIMEOUT_MAX_S = 1, 900
RETRIES_MIN, RETRIES_MAX = 0, 2
EVENT_AGE_MIN_S, EVENT_AGE_MAX_S = 60, 21600
ENV_MAX_BYTES = 4096
DESCRIPTION_MAX = 256
HANDLER_MAX = 128
ALIAS_MAX = 128

_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_POOL = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_POOL = "default"  # the pool of a function that names none (keys.work_queue)
_ALIAS_NAME = re.compile(r"(?!^[0-9]+$)[A-Za-z0-9_-]+")
_VERSION = re.compile(r"[1-9][0-9]*")
_ENV_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]+")
# `module.function`, `pkg.module.function` or awslambdaric's `pkg/module.function`; no segment
# may be empty, `.` or `..`, so a handler cannot name a module outside the task root.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_HANDLER = re.compile(rf"(?:{_SEGMENT}/)*{_SEGMENT}(?:\.{_SEGMENT})*\.[A-Za-z_][A-Za-z0-9_]*")
# A `provided` bootstrap reads _HANDLER as it likes: Lambda only forbids whitespace there.
_ANY_HANDLER = re.compile(r"\S+")
_DESTINATION = re.compile(r"(amqp:///[A-Za-z0-9_.:-]{1,255}|redis\+stream:///[^\s/]{1,255})")

# The variables Lambda's runtime sets itself (lambda-semantics §4.3); a function may not set them.
RESERVED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)



@dataclass(frozen=True)
class AsyncConfig:
    """Lambda's event invoke config: retries on function error, event age, destinations."""

    max_retries: int = 2
    max_event_age_s: int = 21600
    on_success: str | None = None
    on_failure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "max_event_age_s": self.max_event_age_s,
            "on_success": self.on_success,
            "on_failure": self.on_failure,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AsyncConfig:
        return cls(
            max_retries=int(data.get("max_retries", 2)),
            max_event_age_s=int(data.get("max_event_age_s", 21600)),
            on_success=data.get("on_success"),
            on_failure=data.get("on_failure"),
        )

    def validate(self) -> AsyncConfig:
        check_range("max retries", self.max_retries, RETRIES_MIN, RETRIES_MAX, "")
        check_range("max event age", self.max_event_age_s, EVENT_AGE_MIN_S, EVENT_AGE_MAX_S, " s")
        check_destination("on-success", self.on_success)
        check_destination("on-failure", self.on_failure)
        return self


EPHEMERAL_DEFAULT_MB, EPHEMERAL_MAX_MB = 512, 10240  # Lambda's /tmp: 512 MB to 10 GB
NETWORK_MODES = ("default", "none")  # none: a network namespace with nothing in it


@dataclass(frozen=True)
class FunctionSpec:
    """Everything needed to run one version of a function; `$LATEST` or an immutable "1", "2"..."""

    name: str
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    env: Mapping[str, str] = field(hash=False)
    description: str
    code_sha256: str
    code_size: int
    version: str
    async_config: AsyncConfig
    last_modified: str
    pool: str = DEFAULT_POOL  # the workers that run it: `warren worker --pool NAME`
    layers: tuple[LayerRef, ...] = ()  # merged under the sandbox's /opt in this order
    network: str = "default"  # "none": the handler gets no network at all
    ephemeral_storage_mb: int = EPHEMERAL_DEFAULT_MB  # its /tmp, capped (Lambda's EphemeralStorage)

    @property
    def arn(self) -> str:
        """Lambda's FunctionArn: unqualified for `$LATEST`, qualified for a published version."""
        return function_arn(self.name, None if self.version == LATEST else self.version)

    @property
    def qualified_arn(self) -> str:
        return function_arn(self.name, self.version)

    @cached_property
    def packed(self) -> bytes:
        """The spec alone as a message part (a codec envelope of kind SPEC_KIND), made once
        per spec: the Redis sync lane's requests carry it (warren/invocation.py)."""
        return codec.encode(SPEC_KIND, self.wire)

    @cached_property
    def wire(self) -> dict[str, Any]:
        """`to_dict()` made once per spec, for messages (a sync call encodes its spec each
        time); read-only: never change the dict it returns."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "handler": self.handler,
            "runtime": self.runtime,
            "memory_mb": self.memory_mb,
            "timeout_s": self.timeout_s,
            "env": dict(self.env),
            "description": self.description,
            "code_sha256": self.code_sha256,
            "code_size": self.code_size,
            "version": self.version,
            "async_config": self.async_config.to_dict(),
            "last_modified": self.last_modified,
            "pool": self.pool,
            "layers": [layer.to_dict() for layer in self.layers],
            **({"network": self.network} if self.network != "default" else {}),
            **({"ephemeral_storage_mb": self.ephemeral_storage_mb}
               if self.ephemeral_storage_mb != EPHEMERAL_DEFAULT_MB else {}),
        }

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FunctionSpec:
        return cls(
            name=data["name"],
            handler=data["handler"],
            runtime=data["runtime"],
            memory_mb=int(data["memory_mb"]),
            timeout_s=int(data["timeout_s"]),
            env=dict(data.get("env") or {}),
            description=data.get("description", ""),
            code_sha256=data["code_sha256"],
            code_size=int(data["code_size"]),
            version=str(data.get("version", LATEST)),
            async_config=AsyncConfig.from_dict(data.get("async_config") or {}),
            last_modified=data.get("last_modified", ""),
            pool=str(data.get("pool") or DEFAULT_POOL),
            layers=tuple(LayerRef.from_dict(x) for x in data.get("layers") or ()),
            network=str(data.get("network") or "default"),
            ephemeral_storage_mb=int(data.get("ephemeral_storage_mb") or EPHEMERAL_DEFAULT_MB),
        )

    def fingerprint(self) -> bytes:
        """Code and configuration, minus what publishing itself sets (Lambda compares these)."""
        body = self.to_dict()
        for key in ("version", "last_modified", "description"):
            body.pop(key)
        if body["pool"] == DEFAULT_POOL:  # as specs stored before pools existed
            body.pop("pool")
        if not body["layers"]:  # as specs stored before layers existed
            body.pop("layers")
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    def as_version(self, version: str, description: str | None = None) -> FunctionSpec:
        return replace(
            self,
            version=version,
            description=self.description if description is None else description,
            last_modified=iso_time(zulu=False),
        )

    def validate(self) -> FunctionSpec:
        check_function_name(self.name)
        check_runtime(self.runtime)
        check_handler(self.handler, self.runtime)
        check_range("memory", self.memory_mb, MEMORY_MIN_MB, MEMORY_MAX_MB, " MB")
        check_range("timeout", self.timeout_s, TIMEOUT_MIN_S, TIMEOUT_MAX_S, " s")
        check_env(self.env)
        check_description(self.description)
        check_pool(self.pool)
        if len(self.layers) > MAX_LAYERS:
            raise InvalidParameter(f"a function may use at most {MAX_LAYERS} layers")
        check_network(self.network)
        check_range("ephemeral storage", self.ephemeral_storage_mb, EPHEMERAL_DEFAULT_MB,
                    EPHEMERAL_MAX_MB, " MB")
        self.async_config.validate()
        return self


@dataclass(frozen=True)
class Alias:
    """A named pointer to a version, with at most one extra version taking `weight` of traffic."""

    function: str
    name: str
    version: str
    weights: Mapping[str, float] = field(default_factory=dict, hash=False)
    description: str = ""

    @property
    def arn(self) -> str:
        return function_arn(self.function, self.name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "name": self.name,
            "version": self.version,
            "weights": dict(self.weights),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alias:
        return cls(
            function=data["function"],
            name=data["name"],
            version=str(data["version"]),
            weights={str(k): float(v) for k, v in (data.get("weights") or {}).items()},
            description=data.get("description", ""),
        )


def check_function_name(name: str) -> str:
    if not isinstance(name, str) or not _FUNCTION_NAME.fullmatch(name):
        raise InvalidParameter(
            f"function name {name!r} is invalid: use 1-64 letters, digits, '-' or '_'"
        )
    return name


def check_pool(pool: str) -> str:
    if not isinstance(pool, str) or not _POOL.fullmatch(pool):
        raise InvalidParameter(
            f"pool {pool!r} is invalid: use 1-64 letters, digits, '-' or '_'"
        )
    return pool


def check_network(network: str) -> str:
    if network not in NETWORK_MODES:
        raise InvalidParameter(f"network must be one of {', '.join(NETWORK_MODES)}: {network!r}")
    return network


def check_alias_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > ALIAS_MAX or not _ALIAS_NAME.fullmatch(name):
        raise InvalidParameter(
            f"alias name {name!r} is invalid: use 1-{ALIAS_MAX} letters, digits, '-' or '_', "
            "and not only digits (numbers are versions)"
        )
    return name


def is_version(qualifier: str) -> bool:
    return bool(_VERSION.fullmatch(qualifier))


def check_handler(handler: str, runtime: str | None = None) -> str:
    rule = _ANY_HANDLER if runtime is not None and runtimes.is_provided(runtime) else _HANDLER
    if len(handler) > HANDLER_MAX or not rule.fullmatch(handler):
        raise InvalidParameter(
            f"handler {handler!r} is invalid: use module.function (e.g. app.handler), "
            f"at most {HANDLER_MAX} characters"
        )
    return handler


def check_runtime(runtime: str) -> str:
    if runtime not in runtimes.KNOWN:
        raise InvalidParameter(
            f"runtime {runtime!r} is not supported: use one of {runtimes.describe(runtimes.KNOWN)}"
        )
    return runtime


def check_range(what: str, value: int, low: int, high: int, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidParameter(f"{what} {value!r}{unit} is out of range: use {low}-{high}{unit}")
    return value


def check_description(description: str) -> str:
    if len(description) > DESCRIPTION_MAX:
        raise InvalidParameter(f"description is too long: at most {DESCRIPTION_MAX} characters")
    return description


def check_env(env: Mapping[str, str]) -> Mapping[str, str]:
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
            raise InvalidParameter(
                f"environment variable name {key!r} is invalid: start with a letter, then at least "
                "one letter, digit or '_'"
            )
        if key in RESERVED_ENV:
            raise InvalidParameter(
                f"environment variable {key} is reserved by the runtime: choose another name"
            )
        if not isinstance(value, str):
            raise InvalidParameter(f"environment variable {key} must be a string")
    # Measured as Lambda's API carries the map: its JSON encoding, in UTF-8 bytes.
    size = len(orjson.dumps(dict(env))) if env else 0
    if size > ENV_MAX_BYTES:
        raise InvalidParameter(
            f"environment variables take {size} bytes: the total must stay within 4 KB "
            f"({ENV_MAX_BYTES} bytes as JSON)"
        )
    return env


def check_destination(which: str, uri: str | None) -> str | None:
    if uri is not None and not _DESTINATION.fullmatch(uri):
        raise InvalidParameter(
            f"{which} destination {uri!r} is invalid: use amqp:///QUEUE or redis+stream:///STREAM"
        )
    return uri


def check_concurrency(n: int | None) -> int | None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise InvalidParameter(f"reserved concurrency {n!r} is invalid: use a whole number >= 0")
    return n


def check_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    """An alias's routing: at most one extra version, its weight within 0.0-1.0."""
    if not weights:
        return {}
    if len(weights) > 1:
        raise InvalidParameter("an alias can route to at most one additional version")
    result: dict[str, float] = {}
    for version, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise InvalidParameter(f"weight {weight!r} must be a number between 0.0 and 1.0")
        if math.isnan(weight) or not 0.0 <= weight <= 1.0:
            raise InvalidParameter(f"weight {weight!r} is out of range: use 0.0-1.0")
        result[str(version)] = float(weight)
    return result
