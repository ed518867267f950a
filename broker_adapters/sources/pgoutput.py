"""PostgreSQL's pgoutput logical decoding messages (protocol 1), parsed into row changes."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

PG_EPOCH_S = 946_684_800  # 2000-01-01T00:00:00Z, where PostgreSQL's timestamps count from
_BEGIN = struct.Struct(">QqI")
_COMMIT = struct.Struct(">BQQq")
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_RELATION_HEAD = struct.Struct(">I")
_COLUMN_TAIL = struct.Struct(">Ii")

# What a tuple column holds: its text, None for NULL, or UNCHANGED for a TOASTed value the
# update left alone (PostgreSQL does not send it again).
UNCHANGED = object()


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    columns: tuple[Column, ...]


@dataclass
class Change:
    """One row change of a committed transaction; `old` only when PostgreSQL sent it."""

    op: str                     # "I", "U" or "D"
    relation: Relation
    new: list[object] | None
    old: list[object] | None
    index: int = 0              # its place in the transaction, from 0


@dataclass
class Transaction:
    """A committed transaction's changes; `end_lsn` is where a checkpoint after it points."""

    commit_lsn: int
    commit_time_s: float
    changes: list[Change] = field(default_factory=list)
    end_lsn: int = 0


class Decoder:
    """Turns the messages of one decoding session, in order, into whole transactions.

    Relation messages come before a relation's first change in each session, so one decoder
    per peek call keeps them in its own cache.
    """

    def __init__(self) -> None:
        self._relations: dict[int, Relation] = {}
        self._open: Transaction | None = None

    def feed(self, message: bytes) -> Transaction | None:
        """Take one message; returns a transaction when its Commit arrives."""
        tag = message[:1]
        if tag == b"B":
            final_lsn, micros, _xid = _BEGIN.unpack_from(message, 1)
            self._open = Transaction(final_lsn, PG_EPOCH_S + micros / 1_000_000)
        elif tag == b"C":
            _flags, _commit, end_lsn, _micros = _COMMIT.unpack_from(message, 1)
            done, self._open = self._open, None
            if done is not None:
                done.end_lsn = end_lsn
            return done
        elif tag == b"R":
            relation = _relation(message)
            self._relations[relation.oid] = relation
        elif tag in (b"I", b"U", b"D") and self._open is not None:
            self._open.changes.append(self._change(tag.decode(), message))
        # Origin, Type, Truncate and logical Message carry no row: nothing to deliver.
        return None

    def _change(self, op: str, message: bytes) -> Change:
        (oid,) = _U32.unpack_from(message, 1)
        relation = self._relations[oid]
        pos = 5
        old: list[object] | None = None
        new: list[object] | None = None
        while pos < len(message):
            kind = message[pos : pos + 1]
            values, pos = _tuple(message, pos + 1)
            if kind == b"N":
                new = values
            else:  # "K" (the key only) or "O" (the whole old row)
                old = values
        assert self._open is not None
        return Change(op, relation, new, old, len(self._open.changes))


def _cstring(message: bytes, pos: int) -> tuple[str, int]:
    end = message.index(b"\0", pos)
    return message[pos:end].decode(), end + 1


def _relation(message: bytes) -> Relation:
    (oid,) = _RELATION_HEAD.unpack_from(message, 1)
    schema, pos = _cstring(message, 5)
    name, pos = _cstring(message, pos)
    pos += 1  # replica identity setting
    (count,) = _U16.unpack_from(message, pos)
    pos += 2
    columns = []
    for _ in range(count):
        pos += 1  # flags: with REPLICA IDENTITY FULL every column claims to be a key
        column, pos = _cstring(message, pos)
        type_oid, _typmod = _COLUMN_TAIL.unpack_from(message, pos)
        pos += 8
        columns.append(Column(column, type_oid))
    return Relation(oid, schema or "public", name, tuple(columns))


def _tuple(message: bytes, pos: int) -> tuple[list[object], int]:
    (count,) = _U16.unpack_from(message, pos)
    pos += 2
    values: list[object] = []
    for _ in range(count):
        kind = message[pos]
        pos += 1
        if kind == 0x74:  # 't': text
            (length,) = _U32.unpack_from(message, pos)
            pos += 4
            values.append(message[pos : pos + length].decode())
            pos += length
        elif kind == 0x6E:  # 'n': NULL
            values.append(None)
        elif kind == 0x75:  # 'u': unchanged TOASTed value
            values.append(UNCHANGED)
        else:
            raise ValueError(f"pgoutput: unexpected tuple column kind {kind!r}")
    return values, pos


def lsn_text(lsn: int) -> str:
    """An LSN as PostgreSQL writes it (`16/B374D848`)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)
