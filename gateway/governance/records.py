"""The journal's record: one canonical byte encoding per record, hashed into a chain per stream.

A record's `body` is the JSON object

    {"actor": str, "kind": str, "payload": {...}, "prev": str, "seq": int, "stream": str,
     "time_ns": int}

exactly as orjson writes it with OPT_SORT_KEYS: compact (no spaces), UTF-8, object keys sorted by
code point at every depth. `hash` is SHA-256(body), in lowercase hex; `prev` is the hash of the
record before it in the same stream, or GENESIS (64 zeros) for the stream's first record. `seq`
counts from 1 per stream without gaps, so a stream's head seq is also its record count (and the
size of a Merkle tree over it: the tree's leaf data are the bodies, in seq order). `time_ns` is
the wall clock, in nanoseconds since the epoch, when `append` was called, raised where needed so
that it never decreases along a stream.

The body is the unit of tamper evidence: it is what the hash, the chain and the Merkle leaves
cover, and `decode_body` refuses a body that is not in the canonical form above even when its
hash matches (a different writer, or a hand edit, would show up as such).

Payload hazards: the payload must be a dict with string keys, of what orjson serializes (nested
dicts, lists, str, int within 64 bits, float, bool, None; also dataclasses, enums, datetimes and
UUIDs, which come back as their JSON form). NaN and infinities are written as null. What `read`
returns is the decoded JSON, so a tuple comes back as a list.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

GENESIS = "0" * 64  # the `prev` of a stream's first record

_KEYS = frozenset(("actor", "kind", "payload", "prev", "seq", "stream", "time_ns"))
_HEX = frozenset("0123456789abcdef")

# Generous bounds so that the body of a record whose parts pass them always fits a frame
# (segments.MAX_BODY = 64 MiB): JSON escaping at most sextuples a character.
MAX_PAYLOAD_BYTES = 64 * 1024 * 1024 - 64 * 1024
MAX_NAME_CHARS = 1024  # for `kind` and `actor`


class JournalError(Exception):
    """Base of the journal's own errors (storage, format, lifecycle)."""


class JournalCorrupt(JournalError):
    """The journal's files are damaged, and where.

    `segment` is the file (None when a whole segment is missing), `offset` the byte offset of the
    bad frame in it (None when not tied to one), `seq` the seq of the bad record, or, for an
    unreadable frame or a missing record, the seq it should have carried. `reason` says what is
    wrong in words an operator can act on.
    """

    def __init__(
        self, stream: str, segment: Path | None, offset: int | None, seq: int | None, reason: str
    ) -> None:
        where = [f"journal stream '{stream}'"]
        if segment is not None:
            where.append(f"segment {segment.name}")
        if offset is not None:
            where.append(f"offset {offset}")
        if seq is not None:
            where.append(f"seq {seq}")
        super().__init__(f"{', '.join(where)}: {reason}")
        self.stream = stream
        self.segment = segment
        self.offset = offset
        self.seq = seq
        self.reason = reason


class MalformedRecord(ValueError):
    """A body whose hash matched but which is not a canonical record; the message says why."""


@dataclass(frozen=True, slots=True)
class Record:
    """One journal record. `body` holds the exact bytes that were hashed (the Merkle leaf data).

    `payload` is decoded from the body on first use, unless the record was made with it (as
    records read back are): the writer's Records go to callers that mostly want seq and hash.
    """

    seq: int
    time_ns: int
    stream: str
    kind: str
    actor: str
    prev: str  # hash of the previous record of the stream (hex), GENESIS for seq 1
    hash: str  # SHA-256 of body (hex)
    body: bytes = field(repr=False)
    decoded: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @property
    def payload(self) -> dict[str, Any]:
        payload = self.decoded
        if payload is None:
            payload = orjson.loads(self.body)["payload"]
            object.__setattr__(self, "decoded", payload)  # a cache: the record stays equal
        return payload


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Serialize a payload the way it will sit inside a body (sorted keys, compact).

    Called by `append` on the caller's thread, so a payload that cannot be journalled fails there
    (TypeError, ValueError) instead of in the writer thread. Raises TypeError for a non-dict or
    an unserializable value, ValueError for a payload over MAX_PAYLOAD_BYTES.
    """
    if type(payload) is not dict:
        raise TypeError(f"a journal payload must be a dict, not {type(payload).__name__}")
    try:
        encoded = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as error:  # a TypeError subclass: keep the type, say where
        raise TypeError(f"the payload cannot be journalled: {error}") from None
    if len(encoded) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"the payload encodes to {len(encoded)} bytes, over the limit of {MAX_PAYLOAD_BYTES}"
        )
    return encoded


def check_name(what: str, value: str) -> None:
    """Validate `kind` or `actor` on the caller's thread, so the writer cannot fail encoding it:
    a str of at most MAX_NAME_CHARS that UTF-8 can encode."""
    if type(value) is not str:
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{what} is {len(value)} characters long, over {MAX_NAME_CHARS}")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode text (a lone surrogate)") from None


# the fields in sorted order, as orjson's OPT_SORT_KEYS writes them
_BODY = b'{"actor":%b,"kind":%b,"payload":%b,"prev":"%b","seq":%d,"stream":%b,"time_ns":%d}'


@functools.lru_cache(maxsize=4096)  # actors are principals: few, but not bounded by the code
def _json_name(name: str) -> bytes:
    """A stream, kind or actor as a JSON string (checked by `check_name`, so orjson takes it)."""
    return orjson.dumps(name)


def encode_body(
    seq: int, time_ns: int, stream: str, kind: str, actor: str, payload_json: bytes, prev: str
) -> bytes:
    """The canonical body; `payload_json` comes from `encode_payload` and is embedded verbatim.

    Equal, byte for byte, to orjson.dumps of the whole record dict with OPT_SORT_KEYS (tested):
    formatted into a template, with the names' JSON forms remembered, because the writer makes
    one for every prediction and orjson's sorting of a fresh dict cost it ~2 µs each time.
    """
    return _BODY % (
        _json_name(actor), _json_name(kind), payload_json, prev.encode(), seq,
        _json_name(stream), time_ns,
    )  # fmt: skip


def body_hash(body: bytes) -> bytes:
    """SHA-256 of a body: the record's hash (its hex form is the next record's `prev`)."""
    return hashlib.sha256(body).digest()


def decode_body(body: bytes, digest: bytes) -> Record:
    """Parse and check a body whose SHA-256 is `digest` (the caller has compared them).

    Raises MalformedRecord when the body is not JSON, lacks or adds a field, has a field of the
    wrong type, or is not in canonical form. Chain checks (seq order, `prev`) are the caller's.
    """
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedRecord(f"the record is not JSON ({error})") from None
    if type(obj) is not dict or obj.keys() != _KEYS:
        raise MalformedRecord(
            "the record does not have exactly the fields " + ", ".join(sorted(_KEYS))
        )
    seq, time_ns, prev = obj["seq"], obj["time_ns"], obj["prev"]
    if type(seq) is not int or seq < 1:
        raise MalformedRecord(f"seq {seq!r} is not a positive integer")
    if type(time_ns) is not int or time_ns < 0:
        raise MalformedRecord(f"time_ns {time_ns!r} is not a non-negative integer")
    if type(prev) is not str or len(prev) != 64 or not _HEX.issuperset(prev):
        raise MalformedRecord("prev is not 64 lowercase hex digits")
    for name in ("stream", "kind", "actor"):
        if type(obj[name]) is not str:
            raise MalformedRecord(f"{name} is not a string")
    if type(obj["payload"]) is not dict:
        raise MalformedRecord("payload is not an object")
    if orjson.dumps(obj, option=orjson.OPT_SORT_KEYS) != body:
        raise MalformedRecord("the record is not in canonical form")
    return Record(
        seq=seq,
        time_ns=time_ns,
        stream=obj["stream"],
        kind=obj["kind"],
        actor=obj["actor"],
        prev=prev,
        hash=digest.hex(),
        body=body,
        decoded=obj["payload"],
    )
