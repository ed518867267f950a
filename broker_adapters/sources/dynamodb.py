"""A PostgreSQL row change as a DynamoDB stream record: typed attribute values and the record."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import orjson

from broker_adapters.sources.pgoutput import UNCHANGED, Change, Column, Transaction

VIEWS = ("NEW_AND_OLD_IMAGES", "NEW_IMAGE", "OLD_IMAGE", "KEYS_ONLY")
EVENT_NAMES = {"I": "INSERT", "U": "MODIFY", "D": "REMOVE"}
_BOOL = 16
_BYTEA = 17
_NUMBERS = frozenset({20, 21, 23, 26, 700, 701, 1700})
_JSON = frozenset({114, 3802})
# Array types whose elements are numbers, booleans, or else text.
_NUMBER_ARRAYS = frozenset({1005, 1007, 1016, 1021, 1022, 1231, 1028})
_BOOL_ARRAYS = frozenset({1000})
_TEXT_ARRAYS = frozenset({1009, 1015, 1014, 2951, 1182, 1115, 1185, 1041})
_NOT_A_NUMBER = frozenset({"NaN", "Infinity", "-Infinity"})


def attribute(type_oid: int, text: str) -> dict[str, Any]:
    """One column's text (as PostgreSQL prints it) as a DynamoDB attribute value."""
    if type_oid in _NUMBERS:
        return {"S": text} if text in _NOT_A_NUMBER else {"N": text}
    if type_oid == _BOOL:
        return {"BOOL": text == "t"}
    if type_oid in _JSON:
        # Numbers keep their text: orjson would turn 10**20 into a float and lose digits.
        return json_attribute(json.loads(text, parse_int=_Number, parse_float=_Number))
    if type_oid == _BYTEA:
        raw = bytes.fromhex(text[2:]) if text.startswith("\\x") else text.encode()
        return {"B": base64.b64encode(raw).decode()}
    if type_oid in _NUMBER_ARRAYS or type_oid in _BOOL_ARRAYS or type_oid in _TEXT_ARRAYS:
        element = 1700 if type_oid in _NUMBER_ARRAYS else _BOOL if type_oid in _BOOL_ARRAYS else 25
        return _array_attribute(parse_array(text), element)
    return {"S": text}


class _Number(str):
    """A JSON number's own text."""


def json_attribute(value: Any) -> dict[str, Any]:
    """A JSON value as DynamoDB types it: objects M, arrays L, strings S, numbers N."""
    if isinstance(value, _Number):
        return {"N": str(value)}
    if isinstance(value, dict):
        return {"M": {k: json_attribute(v) for k, v in value.items()}}
    if isinstance(value, list):
        return {"L": [json_attribute(v) for v in value]}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": repr(value)}
    if value is None:
        return {"NULL": True}
    return {"S": str(value)}


def _array_attribute(items: list[Any], element: int) -> dict[str, Any]:
    return {"L": [
        {"NULL": True} if item is None
        else _array_attribute(item, element) if isinstance(item, list)
        else attribute(element, item)
        for item in items
    ]}


def parse_array(text: str) -> list[Any]:
    """A PostgreSQL array literal (`{1,2,"a b",NULL,{3}}`) as nested lists of text and None."""
    stack: list[list[Any]] = []
    out: list[Any] = []
    i = 0
    if text.startswith("["):  # explicit bounds: [0:1]={...}
        i = text.index("=") + 1
    while i < len(text):
        ch = text[i]
        if ch == "{":
            stack.append([])
            i += 1
        elif ch == "}":
            done = stack.pop()
            if stack:
                stack[-1].append(done)
            else:
                out = done
            i += 1
        elif ch == ",":
            i += 1
        elif ch == '"':
            j, chars = i + 1, []
            while text[j] != '"':
                if text[j] == "\\":
                    j += 1
                chars.append(text[j])
                j += 1
            stack[-1].append("".join(chars))
            i = j + 1
        else:
            j = i
            while text[j] not in ",}":
                j += 1
            word = text[i:j].strip()
            stack[-1].append(None if word == "NULL" else word)
            i = j
    return out


def image(columns: Sequence[Column], values: Sequence[object],
          fallback: Sequence[object] | None = None) -> dict[str, Any]:
    """A row as a DynamoDB item; NULL columns become {"NULL": true}. A TOASTed value the change
    left alone is taken from `fallback` (the old row) when there is one, else left out."""
    item: dict[str, Any] = {}
    for i, column in enumerate(columns):
        value = values[i] if i < len(values) else None
        if value is UNCHANGED:
            value = fallback[i] if fallback is not None and i < len(fallback) else UNCHANGED
            if value is UNCHANGED:
                continue
        item[column.name] = {"NULL": True} if value is None else attribute(
            column.type_oid, str(value)
        )
    return item


def sequence_number(commit_lsn: int, index: int) -> str:
    """A change's place in the table's stream: its transaction's commit LSN, then its index in
    the transaction; fixed width, so the text sorts as the number does."""
    return f"{commit_lsn:020d}{index:08d}"


class RecordShaper:
    """Builds a mapping's DynamoDB stream records (its key columns, view, ARN fixed).

    The record's JSON is assembled from its parts' JSON (each image serialised once, its
    length the record's SizeBytes) around constants escaped once here.
    """

    def __init__(self, keys: Sequence[str], view: str, arn: str, region: str) -> None:
        self._keys = tuple(keys)
        self._view = view
        self._new = view in ("NEW_AND_OLD_IMAGES", "NEW_IMAGE")
        self._old = view in ("NEW_AND_OLD_IMAGES", "OLD_IMAGE")
        self._names = {op: orjson.dumps(name) for op, name in EVENT_NAMES.items()}
        self._middle = (b',"eventVersion":"1.1","eventSource":"aws:dynamodb","awsRegion":'
                        + orjson.dumps(region) + b',"dynamodb":{"ApproximateCreationDateTime":')
        self._tail = (b',"StreamViewType":' + orjson.dumps(view) + b'},"eventSourceARN":'
                      + orjson.dumps(arn) + b"}")

    def record(self, txn: Transaction, change: Change) -> tuple[str, bytes]:
        """The change's SequenceNumber and its record as JSON."""
        columns = change.relation.columns
        new = image(columns, change.new, change.old) if change.new is not None else None
        old = image(columns, change.old) if change.old is not None else None
        row = new if new is not None else old or {}
        keys = orjson.dumps({k: row[k] for k in self._keys if k in row})
        size = len(keys)
        parts = [b'{"eventID":"%016x%08x","eventName":' % (txn.commit_lsn, change.index),
                 self._names[change.op], self._middle, b"%d" % int(txn.commit_time_s),
                 b',"Keys":', keys]
        if self._new and new is not None:
            encoded = orjson.dumps(new)
            size += len(encoded)
            parts += (b',"NewImage":', encoded)
        if self._old and old is not None and change.op != "I":
            encoded = orjson.dumps(old)
            size += len(encoded)
            parts += (b',"OldImage":', encoded)
        sequence = sequence_number(txn.commit_lsn, change.index)
        parts += (b',"SequenceNumber":"', sequence.encode(), b'","SizeBytes":%d' % size,
                  self._tail)
        return sequence, b"".join(parts)
