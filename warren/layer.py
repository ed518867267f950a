"""A layer's contracts: a published layer version, a function's reference to one, their rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from warren import runtimes
from warren.aws import ACCOUNT_ID, REGION
from warren.errors import InvalidParameter

MAX_LAYERS = 5  # per function, as on Lambda
MAX_COMPATIBLE_RUNTIMES = 15
_LAYER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# NAME:VERSION, or Lambda's layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION).
_LAYER_REF = re.compile(
    r"(?:arn:aws:lambda:[a-z0-9-]+:[0-9]{12}:layer:)?(?P<name>[A-Za-z0-9_-]{1,64}):"
    r"(?P<version>[1-9][0-9]*)"
)


def layer_arn(name: str, version: int | None = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:layer:{name}"
    return base if version is None else f"{base}:{version}"


def check_layer_name(name: str) -> str:
    if not isinstance(name, str) or not _LAYER_NAME.fullmatch(name):
        raise InvalidParameter(
            f"layer name {name!r} is invalid: use 1-64 letters, digits, '-' or '_'"
        )
    return name


def parse_ref(ref: str) -> tuple[str, int]:
    """`NAME:VERSION` or a layer version ARN -> (name, version)."""
    match = _LAYER_REF.fullmatch(ref.strip()) if isinstance(ref, str) else None
    if match is None:
        raise InvalidParameter(
            f"layer {ref!r} is invalid: use NAME:VERSION (e.g. deps:3) or a layer version ARN"
        )
    return match["name"], int(match["version"])


def check_refs(refs: Iterable[str]) -> list[tuple[str, int]]:
    """A function's layers, in order: at most 5, none named twice."""
    parsed = [parse_ref(r) for r in refs]
    if len(parsed) > MAX_LAYERS:
        raise InvalidParameter(f"a function may use at most {MAX_LAYERS} layers, not {len(parsed)}")
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise InvalidParameter("a function may use only one version of each layer")
    return parsed


def check_compatible_runtimes(names: Iterable[str]) -> tuple[str, ...]:
    result = tuple(dict.fromkeys(names))
    for name in result:
        if name not in runtimes.KNOWN:
            raise InvalidParameter(
                f"runtime {name!r} is not supported: use one of {runtimes.describe(runtimes.KNOWN)}"
            )
    if len(result) > MAX_COMPATIBLE_RUNTIMES:
        raise InvalidParameter(f"at most {MAX_COMPATIBLE_RUNTIMES} compatible runtimes")
    return result


@dataclass(frozen=True)
class LayerRef:
    """What a function spec keeps of one of its layers: enough to run it after a delete."""

    name: str
    version: int
    code_sha256: str
    code_size: int

    @property
    def arn(self) -> str:
        return layer_arn(self.name, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {"arn": self.arn, "name": self.name, "version": self.version,
                "code_sha256": self.code_sha256, "code_size": self.code_size}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerRef:
        return cls(str(data["name"]), int(data["version"]), str(data["code_sha256"]),
                   int(data["code_size"]))


@dataclass(frozen=True)
class LayerVersion:
    """One immutable, numbered version of a layer: its code bundle and its metadata."""

    name: str
    version: int
    code_sha256: str
    code_size: int
    compatible_runtimes: tuple[str, ...]
    description: str
    created: str

    @property
    def arn(self) -> str:
        return layer_arn(self.name, self.version)

    def ref(self) -> LayerRef:
        return LayerRef(self.name, self.version, self.code_sha256, self.code_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "arn": self.arn,
            "layer_arn": layer_arn(self.name),
            "code_sha256": self.code_sha256,
            "code_size": self.code_size,
            "compatible_runtimes": list(self.compatible_runtimes),
            "description": self.description,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerVersion:
        return cls(
            name=str(data["name"]),
            version=int(data["version"]),
            code_sha256=str(data["code_sha256"]),
            code_size=int(data["code_size"]),
            compatible_runtimes=tuple(data.get("compatible_runtimes") or ()),
            description=str(data.get("description") or ""),
            created=str(data.get("created") or ""),
        )
