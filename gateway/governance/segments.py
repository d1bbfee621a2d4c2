"""Segment files: the journal's on-disk format, scanning, torn-tail detection, rotation, retention.

Layout. One folder per stream, `<root>/<stream>/`, holding segment files named
`<first seq, 20 digits>.seg` (the seq of the first record they hold) and `manifest.json`. The
last segment by name is the active one; the others are closed and never written again.

Frame. A segment is a plain concatenation of frames, nothing before, between or after them:

    offset  size  field
    0       4     magic b"MGJ1" (format version 1)
    4       4     body length n, unsigned little-endian, at most MAX_BODY
    8       4     CRC-32 (zlib) of bytes 0..7
    12      n     body: the record's canonical JSON (see records.py)
    12+n    32    SHA-256 of the body: the record's hash

The header CRC keeps a damaged length from swallowing the rest of a file; the magic lets a scan
find the next frame after a damaged one (a valid frame cannot be hidden inside a body: its
length and hash bytes would have to be printable JSON text).

A valid frame has the magic, a matching header CRC, a length within MAX_BODY, all its bytes
present and a body whose SHA-256 equals the stored hash. Scanning a segment yields its valid
frames in order and, between them, unreadable regions: from the first byte that does not begin
a valid frame up to the next offset where one begins, or to the end of the file.

Torn tail (cut on open, logged with segment and offset): an unreadable region that reaches the
end of the stream's LAST segment, i.e. non-empty bytes after the last valid frame of the last
segment that contain no valid frame. That is what a crash leaves: a frame cut short, zeros the
file system allocated but never wrote, a last frame half overwritten. Garbage appended to the
last segment is indistinguishable from that and is treated the same way (cut and logged); so is
a bit flip in the very last record.

Damage (start-up stops, naming the record, unless the operator accepts it) is everything else:
  * an unreadable region followed by a valid frame (bit flip, overwrite, splice inside a file);
  * an unreadable region at the end of a segment that is not the last (a truncated segment);
  * a valid frame whose body is not a canonical record, or a record of another stream;
  * a seq that does not follow its predecessor (a record deleted, repeated or moved), within or
    across segments, or a segment whose first record is not the seq its name says;
  * a `prev` that is not the hash of the previous record (a broken chain link);
  * a time_ns lower than its predecessor's;
  * an empty segment that is not the last, a `.seg` file with a malformed name, records missing
    before the first segment (one deleted without retention) or a retention anchor mismatch.
What the files alone cannot show: whole records removed from the end (the last segment cut at a
frame boundary, or the last segments deleted) and a consistently rewritten chain. Signed Merkle
checkpoints, compared against the journal, cover those.

The manifest records the retention base (seq, hash and time of the last record deleted by
retention, so the chain's first remaining link is still checked) and `exported_through` (the
highest seq an exporter has confirmed). Retention deletes a prefix of closed segments that are
both exported and entirely older than the retention period; it writes the manifest before
deleting, so a crash between the two leaves retired segments that the next open removes.

Threads: the scanning functions and `SegmentFile` hold no shared state; the journal decides
which thread calls them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

import orjson

from gateway.governance.records import (
    GENESIS,
    JournalCorrupt,
    JournalError,
    MalformedRecord,
    decode_body,
)

MAGIC = b"MGJ1"
HEADER_BYTES = 12
HASH_BYTES = 32
FRAME_OVERHEAD = HEADER_BYTES + HASH_BYTES
MAX_BODY = 64 * 1024 * 1024
MANIFEST = "manifest.json"

_U32 = struct.Struct("<I")
_HEADER = struct.Struct("<4sII")
_NAME = re.compile(r"^(\d{20})\.seg$")
_fdatasync = getattr(os, "fdatasync", os.fsync)  # fdatasync: the data and the file size only


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.seg"


def encode_frame(body: bytes, digest: bytes) -> bytes:
    """One frame: header, body, hash. `digest` must be SHA-256(body)."""
    return _frame_header(len(body)) + body + digest


@functools.lru_cache(maxsize=4096)  # records of one kind have a few lengths: the writer's case
def _frame_header(length: int) -> bytes:
    prefix = MAGIC + _U32.pack(length)
    return prefix + _U32.pack(zlib.crc32(prefix))


# --- scanning ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    offset: int
    end: int
    body: bytes
    digest: bytes


@dataclass(frozen=True, slots=True)
class Unreadable:
    """Bytes [offset, end) that do not form valid frames; `reason` describes the first of them."""

    offset: int
    end: int
    reason: str


def _frame_at(data: bytes, offset: int) -> Frame | str:
    """The valid frame starting at `offset`, or why there is none."""
    left = len(data) - offset
    if left < HEADER_BYTES:
        return f"incomplete frame header ({left} of {HEADER_BYTES} bytes)"
    magic, length, crc = _HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        return "no frame marker"
    if zlib.crc32(data[offset : offset + 8]) != crc:
        return "frame header checksum mismatch"
    if length > MAX_BODY:
        return f"frame length {length} over the limit of {MAX_BODY}"
    end = offset + HEADER_BYTES + length + HASH_BYTES
    if end > len(data):
        return f"incomplete frame ({left} of {end - offset} bytes)"
    body = data[offset + HEADER_BYTES : end - HASH_BYTES]
    digest = data[end - HASH_BYTES : end]
    if sha256(body).digest() != digest:
        return "record hash mismatch (the frame's bytes changed)"
    return Frame(offset, end, body, digest)


def iter_frames(data: bytes) -> Iterator[Frame | Unreadable]:
    """Valid frames in order, with the unreadable regions between them (see the module doc)."""
    offset = 0
    while offset < len(data):
        found = _frame_at(data, offset)
        if isinstance(found, Frame):
            yield found
            offset = found.end
            continue
        resume = data.find(MAGIC, offset + 1)
        while resume != -1 and not isinstance(_frame_at(data, resume), Frame):
            resume = data.find(MAGIC, resume + 1)
        end = len(data) if resume == -1 else resume
        yield Unreadable(offset, end, found)
        offset = end


def read_segment(path: Path, limit: int | None = None) -> bytes:
    """A segment's bytes, or its first `limit` bytes (the part a live journal has committed)."""
    with path.open("rb") as file:
        return file.read() if limit is None else file.read(limit)


# --- the index -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """What the journal knows of one segment file. Empty: records 0, last_seq = first_seq - 1."""

    first_seq: int
    path: Path
    size: int  # bytes of the file that hold its frames (a live journal: committed bytes)
    records: int = 0
    last_seq: int = 0
    last_hash: str = ""
    first_time_ns: int = 0
    last_time_ns: int = 0


def list_segments(directory: Path) -> tuple[list[tuple[int, Path]], list[Path]]:
    """(first seq, path) of the folder's segments in seq order, and `.seg` files with bad names."""
    found: list[tuple[int, Path]] = []
    strays: list[Path] = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
        elif path.suffix == ".seg":
            strays.append(path)
    found.sort()
    return found, sorted(strays)


# --- the manifest --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    """Per-stream state that is not in the records themselves."""

    base_seq: int = 0  # the last record deleted by retention (0: none)
    base_hash: str = GENESIS  # its hash: the `prev` of the first record kept
    base_time_ns: int = 0  # its time
    exported_through: int = 0  # every record up to this seq has been exported


def read_manifest(stream: str, directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Manifest()
    try:
        obj = orjson.loads(raw)
        manifest = Manifest(
            base_seq=obj["base_seq"],
            base_hash=obj["base_hash"],
            base_time_ns=obj["base_time_ns"],
            exported_through=obj["exported_through"],
        )
    except (orjson.JSONDecodeError, KeyError, TypeError) as error:
        raise JournalCorrupt(stream, path, None, None, f"unreadable manifest: {error}") from None
    ints = (manifest.base_seq, manifest.base_time_ns, manifest.exported_through)
    if not all(type(v) is int and v >= 0 for v in ints) or type(manifest.base_hash) is not str:
        raise JournalCorrupt(stream, path, None, None, "the manifest has a field of wrong type")
    return manifest


def write_manifest(directory: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically and durably (temporary file, fsync, rename, fsync dir)."""
    data = orjson.dumps(
        {
            "base_seq": manifest.base_seq,
            "base_hash": manifest.base_hash,
            "base_time_ns": manifest.base_time_ns,
            "exported_through": manifest.exported_through,
        },
        option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2,
    )
    temporary = directory / (MANIFEST + ".tmp")
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, directory / MANIFEST)
    fsync_dir(directory)


# --- scanning a stream ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TornTail:
    """The incomplete end of a stream's last segment: bytes [offset, offset + length)."""

    stream: str
    segment: Path
    offset: int
    length: int
    reason: str  # why its first byte does not begin a valid frame
    after_seq: int  # the last intact record before it

    def describe(self) -> str:
        return (
            f"journal stream '{self.stream}': torn tail of {self.length} bytes in segment "
            f"{self.segment.name} at offset {self.offset}, after seq {self.after_seq} "
            f"({self.reason})"
        )


@dataclass(slots=True)
class StreamScan:
    """The result of checking every segment of one stream."""

    stream: str
    segments: list[Segment]
    head_seq: int  # the last intact record (the manifest's base when there is none)
    head_hash: str
    head_time_ns: int
    records: int  # intact records found
    torn_tail: TornTail | None = None
    damage: list[JournalCorrupt] = field(default_factory=list)


def scan_stream(
    stream: str,
    directory: Path,
    manifest: Manifest,
    segments: Sequence[tuple[int, Path, int | None]] | None = None,
) -> StreamScan:
    """Read and check every frame and chain link of a stream; never modifies a file.

    `segments` is (first seq, path, bytes to read or None for all); by default every segment in
    `directory`. Every problem is collected (see the module doc for what counts as a torn tail
    and what as damage) and scanning goes on from the next intact record, so the result also
    says what is still readable.
    """
    damage: list[JournalCorrupt] = []

    def bad(path: Path | None, offset: int | None, seq: int | None, reason: str) -> None:
        damage.append(JournalCorrupt(stream, path, offset, seq, reason))

    if segments is None:
        listed, strays = list_segments(directory)
        segments = [(first, path, None) for first, path in listed]
        for stray in strays:
            bad(stray, None, None, "a segment file whose name is not <first seq, 20 digits>.seg")

    # the chain position: the next record must have expect_seq and prev == expect_prev
    expect_seq, expect_prev = manifest.base_seq + 1, manifest.base_hash
    last_time = manifest.base_time_ns
    anchor_pending = False  # segments retired in the manifest but not yet deleted remain
    if segments:
        first = segments[0][0]
        if first <= manifest.base_seq:
            expect_seq, expect_prev, anchor_pending = first, None, True
            last_time = 0
        elif first > expect_seq:
            bad(
                segments[0][1],
                None,
                expect_seq,
                f"records {expect_seq} to {first - 1} are missing (segments deleted other than"
                " by retention)",
            )
            expect_seq, expect_prev = first, None
    gap = False  # just after unreadable bytes: the next record re-anchors the chain
    total = 0
    torn: TornTail | None = None
    index: list[Segment] = []

    for position, (first_seq, path, limit) in enumerate(segments):
        is_last = position == len(segments) - 1
        try:
            data = read_segment(path, limit)
        except FileNotFoundError:
            bad(path, None, first_seq, "the segment file is missing")
            gap = True
            continue
        size = len(data)
        records = 0
        skipped = False  # this segment had bytes before its first intact record
        seg_first_time = seg_last_time = 0
        seg_last_hash = ""
        seg_last_seq = first_seq - 1
        for item in iter_frames(data):
            if isinstance(item, Unreadable):
                if item.end == len(data) and is_last:
                    torn = TornTail(
                        stream,
                        path,
                        item.offset,
                        item.end - item.offset,
                        item.reason,
                        expect_seq - 1,
                    )
                    size = item.offset
                elif item.end == len(data):
                    bad(
                        path,
                        item.offset,
                        expect_seq,
                        f"{item.reason}, up to the end of a segment that is not the last"
                        " (the segment was truncated or overwritten)",
                    )
                    gap = skipped = True
                else:
                    bad(
                        path,
                        item.offset,
                        expect_seq,
                        f"{item.reason}; {item.end - item.offset} unreadable bytes before the"
                        " next record",
                    )
                    gap = skipped = True
                continue
            try:
                record = decode_body(item.body, item.digest)
            except MalformedRecord as error:
                bad(path, item.offset, expect_seq, str(error))
                gap = skipped = True
                continue
            if record.stream != stream:
                bad(path, item.offset, record.seq, f"a record of stream '{record.stream}'")
                gap = skipped = True
                continue
            seq = record.seq
            if records == 0 and not skipped and seq != first_seq:
                bad(path, item.offset, seq, f"the segment's name says it starts at seq {first_seq}")
            if seq > expect_seq and not gap:
                missing = f"{expect_seq}" if seq == expect_seq + 1 else f"{expect_seq}..{seq - 1}"
                bad(path, item.offset, expect_seq, f"record(s) {missing} missing before seq {seq}")
            elif seq < expect_seq:
                bad(path, item.offset, seq, f"seq {seq} after seq {expect_seq - 1}: out of order")
            elif not gap and expect_prev is not None and record.prev != expect_prev:
                bad(
                    path,
                    item.offset,
                    seq,
                    f"broken chain: prev is not the hash of seq {seq - 1}",
                )
            if record.time_ns < last_time:
                bad(path, item.offset, seq, "time_ns is lower than the previous record's")
            if anchor_pending and seq == manifest.base_seq:
                anchor_pending = False
                if record.hash != manifest.base_hash:
                    bad(
                        path,
                        item.offset,
                        seq,
                        "the hash differs from the one the manifest kept when retiring it",
                    )
            expect_seq, expect_prev, gap = seq + 1, record.hash, False
            last_time = max(last_time, record.time_ns)
            if records == 0:
                seg_first_time = record.time_ns
            records += 1
            seg_last_seq, seg_last_hash, seg_last_time = seq, record.hash, record.time_ns
        if records == 0 and not is_last and not any(d.segment == path for d in damage):
            bad(path, 0, first_seq, "an empty segment that is not the last")
        if records == 0 and is_last and first_seq != expect_seq:
            bad(
                path,
                None,
                expect_seq,
                f"the last segment is empty and named for seq {first_seq}, not {expect_seq}",
            )
        total += records
        index.append(
            Segment(
                first_seq=first_seq,
                path=path,
                size=size,
                records=records,
                last_seq=seg_last_seq,
                last_hash=seg_last_hash,
                first_time_ns=seg_first_time,
                last_time_ns=seg_last_time,
            )
        )
    if anchor_pending:
        bad(None, None, manifest.base_seq, "the record that retention was anchored at is missing")
    head_hash = expect_prev if expect_prev is not None else manifest.base_hash
    return StreamScan(stream, index, expect_seq - 1, head_hash, last_time, total, torn, damage)


# --- writing -------------------------------------------------------------------------------------


def fsync_dir(directory: Path) -> None:
    """Make a folder's entries (new, renamed, deleted files) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cut_tail(path: Path, offset: int) -> None:
    """Truncate a segment to `offset` bytes, durably (the torn-tail repair)."""
    with path.open("r+b") as file:
        file.truncate(offset)
        file.flush()
        os.fsync(file.fileno())


class SegmentFile:
    """The active segment of a stream, open for appending. Owned by the journal's writer thread."""

    def __init__(self, path: Path, first_seq: int, fd: int, size: int) -> None:
        self.path = path
        self.first_seq = first_seq
        self.size = size
        self._fd = fd

    @classmethod
    def create(cls, directory: Path, first_seq: int, *, sync_dir: bool) -> SegmentFile:
        """A new, empty segment; with `sync_dir` its name is durable before anything is written."""
        path = directory / segment_name(first_seq)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o644)
        if sync_dir:
            fsync_dir(directory)
        return cls(path, first_seq, fd, 0)

    @classmethod
    def reopen(cls, segment: Segment) -> SegmentFile:
        """Continue appending to a scanned segment; its size on disk must be what the scan saw."""
        fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
        actual = os.fstat(fd).st_size
        if actual != segment.size:
            os.close(fd)
            raise JournalError(
                f"segment {segment.path} is {actual} bytes, not the {segment.size} bytes scanned:"
                " another process is writing to it"
            )
        return cls(segment.path, segment.first_seq, fd, segment.size)

    def write(self, data: bytes) -> None:
        """Append all of `data`. On failure the file is cut back to its previous size (best
        effort) and the OSError propagates."""
        view = memoryview(data)
        before = self.size
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError:
            with contextlib.suppress(OSError):  # else the next open cuts it as a torn tail
                os.ftruncate(self._fd, before)
            raise
        self.size = before + len(data)

    def sync(self) -> None:
        _fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


# --- retention -----------------------------------------------------------------------------------


def expired_segments(
    segments: Sequence[Segment], manifest: Manifest, cutoff_ns: int
) -> list[Segment]:
    """The leading closed segments that retention may delete: every record exported and older
    than `cutoff_ns`. Never the last (active) segment, never a segment after one that must stay,
    so what remains is still one unbroken chain."""
    out: list[Segment] = []
    for segment in segments[:-1]:
        if (
            segment.records == 0
            or segment.last_seq > manifest.exported_through
            or segment.last_time_ns >= cutoff_ns
        ):
            break
        out.append(segment)
    return out


def retire(directory: Path, manifest: Manifest, doomed: Sequence[Segment]) -> Manifest:
    """Delete `doomed` (a leading run of segments), recording the last deleted record in the
    manifest first. Returns the new manifest."""
    last = doomed[-1]
    updated = Manifest(
        base_seq=last.last_seq,
        base_hash=last.last_hash,
        base_time_ns=last.last_time_ns,
        exported_through=manifest.exported_through,
    )
    write_manifest(directory, updated)
    for segment in doomed:
        segment.path.unlink(missing_ok=True)
    fsync_dir(directory)
    return updated
