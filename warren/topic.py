"""Topics (SNS-like fan-out): names, subscriptions, message attributes, filter policies, events.

A subscription's filter policy uses SNS's syntax on message attributes, which is the grammar
of `warren.filter` (exact values, prefix, suffix, equals-ignore-case, anything-but, numeric,
exists): a message passes when every key of the policy matches its attribute.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from warren.aws import ACCOUNT_ID, REGION, iso_time
from warren.errors import InvalidParameter
from warren.filter import FilterCriteria, parse_pattern

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
ATTRIBUTE_TYPES = ("String", "Number", "String.Array", "Binary")
MAX_MESSAGE_BYTES = 256 * 1024  # SNS's limit on a message with its attributes
MESSAGE_KIND = "sns"             # the envelope kind of a published message (warren.codec)


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidParameter(
            f"bad topic name {name!r}: 1-256 letters, digits, hyphens or underscores"
        )
    return name


def topic_arn(name: str, region: str = REGION, account: str = ACCOUNT_ID) -> str:
    return f"arn:aws:sns:{region}:{account}:{name}"


@dataclass(frozen=True)
class Subscription:
    id: str
    topic: str
    function: str                       # NAME or NAME:QUALIFIER
    filter_policy: str | None = None    # JSON text, as given
    raw: bool = False                   # the function gets the message itself, not SNS's event
    created: str = field(default_factory=iso_time)

    @property
    def function_name(self) -> str:
        return self.function.split(":", 1)[0]

    @property
    def qualifier(self) -> str | None:
        return self.function.split(":", 1)[1] if ":" in self.function else None

    @property
    def arn(self) -> str:
        return f"{topic_arn(self.topic)}:{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Subscription:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @classmethod
    def new(cls, topic: str, function: str, filter_policy: str | None = None,
            raw: bool = False) -> Subscription:
        if not function or function.startswith(":"):
            raise InvalidParameter("--function needs NAME or NAME:QUALIFIER")
        if filter_policy is not None:
            filter_policy = orjson.dumps(parse_pattern(filter_policy)).decode()
        return cls(uuid.uuid4().hex[:12], topic, function, filter_policy, raw)

    def accepts(self, attributes: Mapping[str, Mapping[str, str]]) -> bool:
        if self.filter_policy is None:
            return True
        return FilterCriteria([self.filter_policy]).matches(filter_document(attributes))


@dataclass(frozen=True)
class TopicMessage:
    """One published message as it travels to the subscriptions (msgpack, kind "sns")."""

    id: str
    topic: str
    message: str
    subject: str | None = None
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    timestamp: str = field(default_factory=iso_time)
    published_ms: int = 0               # when publish was called, for latency measurements

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicMessage:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def parse_attributes(
    given: Mapping[str, Any] | Sequence[str] | None,
) -> dict[str, dict[str, str]]:
    """Message attributes in SNS's {"Type", "Value"} form.

    From the CLI, `NAME=VALUE` is a String, `NAME:Number=5` a Number and
    `NAME:String.Array=["a","b"]` a String.Array. From Python, a value may be a str, a number,
    a list of strings (String.Array) or {"Type": ..., "Value": ...} already.
    """
    out: dict[str, dict[str, str]] = {}
    if given is None:
        return out
    if isinstance(given, Mapping):
        for name, value in given.items():
            out[str(name)] = _typed(value)
    else:
        for text in given:
            key, sep, value = text.partition("=")
            name, _, kind = key.partition(":")
            if not sep or not name:
                raise InvalidParameter(f"bad attribute {text!r}: use NAME=VALUE or NAME:TYPE=VALUE")
            out[name] = _checked(kind or "String", value)
    return out


def _typed(value: Any) -> dict[str, str]:
    if isinstance(value, Mapping):
        return _checked(str(value.get("Type", "String")), str(value.get("Value", "")))
    if isinstance(value, bool):
        return _checked("String", "true" if value else "false")
    if isinstance(value, (int, float)):
        return _checked("Number", orjson.dumps(value).decode())
    if isinstance(value, (list, tuple)):
        return _checked("String.Array", orjson.dumps(list(value)).decode())
    return _checked("String", str(value))


def _checked(kind: str, value: str) -> dict[str, str]:
    if kind not in ATTRIBUTE_TYPES:
        raise InvalidParameter(f"bad attribute type {kind!r}: one of {', '.join(ATTRIBUTE_TYPES)}")
    if kind == "Number":
        try:
            float(value)
        except ValueError:
            raise InvalidParameter(f"attribute value {value!r} is not a Number") from None
    if kind == "String.Array":
        try:
            ok = isinstance(orjson.loads(value), list)
        except orjson.JSONDecodeError:
            ok = False
        if not ok:
            raise InvalidParameter(f'a String.Array is a JSON array, e.g. ["a","b"]: {value!r}')
    return {"Type": kind, "Value": value}


def filter_document(attributes: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """What a filter policy sees: each attribute's value (numbers as numbers, arrays as lists;
    Binary attributes are not filtered on, as in SNS)."""
    doc: dict[str, Any] = {}
    for name, attr in attributes.items():
        kind, value = attr.get("Type", "String"), attr.get("Value", "")
        if kind == "Number":
            number = float(value)
            doc[name] = int(number) if number.is_integer() else number
        elif kind == "String.Array":
            doc[name] = orjson.loads(value)
        elif kind == "String":
            doc[name] = value
    return doc


def sns_event(subscription: Subscription, message: TopicMessage) -> Any:
    """The event a subscribed function receives: SNS's, one record per invocation (or, for a
    raw subscription, the message itself: parsed when it is JSON, else the text)."""
    if subscription.raw:
        try:
            return orjson.loads(message.message)
        except orjson.JSONDecodeError:
            return message.message
    return {"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription.arn,
        "Sns": {
            "Type": "Notification",
            "MessageId": message.id,
            "TopicArn": topic_arn(message.topic),
            "Subject": message.subject,
            "Message": message.message,
            "Timestamp": message.timestamp,
            "SignatureVersion": "1",
            "Signature": "",        # Warren does not sign its messages
            "SigningCertUrl": "",
            "UnsubscribeUrl": "",
            "MessageAttributes": message.attributes,
        },
    }]}
