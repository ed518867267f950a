"""Filter criteria: Lambda's (EventBridge-syntax) patterns deciding which records reach a function.

A mapping holds up to five patterns. A record passes when ANY pattern matches (OR across
filters); a pattern matches when EVERY key in it matches (AND across keys); the array of values
under a key matches when ANY of them does (arrays = OR). A key that is absent from the record
matches only `{"exists": false}`; an array in the record matches when any of its elements does.

What the patterns see (`FilterCriteria.document`), as Lambda applies them:
- stream and queue records: `{"data": <the record's data>}` (Kinesis and Amazon MQ filter on the
  `data` key; `body` is accepted too for queues, as SQS calls it). Data that parses as JSON is
  matched as JSON; anything else is a plain string, so it only matches patterns that do not look
  inside it (a string pattern on `data` itself, or `exists`).
- S3 records, scheduled events and table changes (DynamoDB records): the record itself, as the
  handler would receive it; MQTT messages: the payload (`{"data": ...}` when not an object).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from warren.errors import InvalidParameter

MAX_FILTERS = 5
MAX_PATTERN_CHARS = 4096
_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}
_ABSENT = object()

Leaf = Callable[[Any], bool]  # called with the value, or _ABSENT when the key is missing


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """EventBridge's exact match: same JSON type and the same JSON text (300 != 300.0)."""
    if _is_number(a) and _is_number(b):
        return orjson.dumps(a) == orjson.dumps(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return type(a) is type(b) and a == b


def _bad(message: str) -> InvalidParameter:
    return InvalidParameter(f"invalid filter pattern: {message}")


def _string_arg(op: str, arg: Any) -> str:
    if not isinstance(arg, str):
        raise _bad(f'"{op}" takes a string, e.g. {{"{op}": "abc"}}')
    return arg


def _numeric(arg: Any) -> Leaf:
    if not isinstance(arg, list) or not arg or len(arg) % 2 or len(arg) > 4:
        raise _bad(
            '"numeric" takes one or two [op, number] pairs, e.g. {"numeric": [">", 0, "<=", 5]}'
        )
    checks: list[tuple[Callable[[float, float], bool], float]] = []
    for op, bound in zip(arg[::2], arg[1::2], strict=True):
        if op not in _NUMERIC_OPS or not _is_number(bound):
            raise _bad(f'"numeric" needs an operator among {sorted(_NUMERIC_OPS)} and a number')
        checks.append((_NUMERIC_OPS[op], float(bound)))
    return lambda v: _is_number(v) and all(check(float(v), b) for check, b in checks)


def _anything_but(arg: Any) -> Leaf:
    if isinstance(arg, dict):
        if len(arg) != 1 or next(iter(arg)) not in ("prefix", "suffix"):
            raise _bad('"anything-but" takes a value, a list, or {"prefix": ...} / {"suffix": ...}')
        (op, text), = arg.items()
        text = _string_arg(op, text)
        if op == "prefix":
            return lambda v: isinstance(v, str) and not v.startswith(text)
        return lambda v: isinstance(v, str) and not v.endswith(text)
    values = arg if isinstance(arg, list) else [arg]
    if not values or any(isinstance(x, (dict, list)) or x is None for x in values):
        raise _bad('"anything-but" takes strings or numbers, e.g. {"anything-but": ["a", "b"]}')
    return lambda v: v is not _ABSENT and not any(_same(v, x) for x in values)


def _operator(rule: dict[str, Any]) -> Leaf:
    if len(rule) != 1:
        raise _bad(f"one operator per object, got {sorted(rule)}")
    (op, arg), = rule.items()
    if op == "prefix":
        text = _string_arg(op, arg)
        return lambda v: isinstance(v, str) and v.startswith(text)
    if op == "suffix":
        text = _string_arg(op, arg)
        return lambda v: isinstance(v, str) and v.endswith(text)
    if op == "equals-ignore-case":
        folded = _string_arg(op, arg).casefold()
        return lambda v: isinstance(v, str) and v.casefold() == folded
    if op == "anything-but":
        return _anything_but(arg)
    if op == "numeric":
        return _numeric(arg)
    if op == "exists":
        if not isinstance(arg, bool):
            raise _bad('"exists" takes true or false')
        return (lambda v: v is not _ABSENT) if arg else (lambda v: v is _ABSENT)
    raise _bad(
        f"unknown operator {op!r} (supported: prefix, suffix, equals-ignore-case, anything-but, "
        "numeric, exists)"
    )


def _exact(want: Any) -> Leaf:
    return lambda v: v is not _ABSENT and _same(v, want)


def _leaf(values: list[Any], path: str) -> Leaf:
    if not values:
        raise _bad(f"the list under {path!r} is empty")
    checks: list[Leaf] = []
    for rule in values:
        if isinstance(rule, dict):
            checks.append(_operator(rule))
        elif isinstance(rule, list):
            raise _bad(f"nested lists are not allowed under {path!r}")
        else:
            checks.append(_exact(rule))
    absent_ok = any(check(_ABSENT) for check in checks)

    def match(value: Any) -> bool:
        if value is _ABSENT:
            return absent_ok
        if isinstance(value, dict):
            return False  # operators apply to leaves only
        items = value if isinstance(value, list) else [value]
        return any(check(item) for item in items for check in checks)

    return match


class _Pattern:
    """One compiled pattern: a tree of keys whose leaves are value matchers."""

    def __init__(self, spec: dict[str, Any], path: str = "") -> None:
        if not spec:
            raise _bad(f"empty object at {path or 'the top'}")
        self._leaves: list[tuple[str, Leaf]] = []
        self._children: list[tuple[str, _Pattern]] = []
        for key, value in spec.items():
            where = f"{path}.{key}" if path else key
            if isinstance(value, dict):
                self._children.append((key, _Pattern(value, where)))
            elif isinstance(value, list):
                self._leaves.append((key, _leaf(value, where)))
            else:
                raise _bad(f"the value under {where!r} must be a list, e.g. [{value!r}]")

    def matches(self, doc: Any) -> bool:
        if isinstance(doc, list):
            return any(self.matches(item) for item in doc)
        if not isinstance(doc, dict):
            return False
        for key, leaf in self._leaves:
            if not leaf(doc.get(key, _ABSENT)):
                return False
        for key, child in self._children:
            sub = doc.get(key, _ABSENT)
            if not child.matches({} if sub is _ABSENT else sub):
                return False
        return True


def parse_pattern(text: str | Mapping[str, Any]) -> dict[str, Any]:
    """Validate one pattern (a JSON object, or its text) and return it as a dict."""
    if isinstance(text, Mapping):
        pattern: Any = dict(text)
    else:
        if len(text) > MAX_PATTERN_CHARS:
            raise _bad(f"longer than {MAX_PATTERN_CHARS} characters")
        try:
            pattern = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise _bad(f'not JSON ({exc}); e.g. {{"data": {{"kind": ["order"]}}}}') from None
    if not isinstance(pattern, dict):
        raise _bad('a pattern is a JSON object, e.g. {"data": {"kind": ["order"]}}')
    _Pattern(pattern)
    return pattern


class FilterCriteria:
    """A mapping's filters: `matches(doc)` is True when any pattern matches (or there are none)."""

    def __init__(self, patterns: Sequence[str | Mapping[str, Any]] = ()) -> None:
        if len(patterns) > MAX_FILTERS:
            raise _bad(f"at most {MAX_FILTERS} filters per mapping, got {len(patterns)}")
        self._patterns = [_Pattern(parse_pattern(p)) for p in patterns]

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def matches(self, doc: Mapping[str, Any]) -> bool:
        return not self._patterns or any(p.matches(doc) for p in self._patterns)

    def accepts(self, kind: str, data: bytes, record: Mapping[str, Any]) -> bool:
        """Whether a source record of this kind passes (cheap when there are no filters)."""
        return not self._patterns or self.matches(self.document(kind, data, record))

    @staticmethod
    def document(kind: str, data: bytes, record: Mapping[str, Any]) -> dict[str, Any]:
        """What the patterns are matched against for one record (see the module docstring)."""
        if kind in ("stream", "queue"):
            try:
                value: Any = orjson.loads(data)
            except orjson.JSONDecodeError:
                value = data.decode("utf-8", "replace")
            return {"data": value, "body": value} if kind == "queue" else {"data": value}
        if kind == "mqtt":  # the payload itself, as an IoT rule's WHERE sees it
            return dict(record) if isinstance(record, Mapping) else {"data": record}
        return dict(record)
