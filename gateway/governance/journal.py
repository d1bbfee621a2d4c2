"""The journal: append-only, hash-chained streams of records, written by one thread.

Streams. A journal holds named streams (by default `admin`, every control operation, allowed or
denied, and `predictions`); each has its own seq counter, hash chain and segment files (see
records.py for the record, segments.py for the files and what counts as a torn tail or damage).

Appending. Three ways, none of which blocks the event loop on disk:

* `await append(..., durable=True)` completes once the record is committed under the fsync
  policy, and returns the Record. A caller that has seen it return can rely on the record.
* `await append(..., durable=False)` (async mode) completes as soon as the record is queued,
  which is at once unless the queue is full. A crash loses what was queued but not committed.
* `extend_nowait(stream, kind, items)`, for code that cannot await (and for any thread): queues
  records of one kind under one lock, with one clock reading for all (the request path hands
  over the predictions of a loop pass at its end). It does not check the limit: its caller asks
  `room(n)` first (see Back-pressure).

The payload is serialized on the caller's thread, so a payload that cannot be journalled raises
there (TypeError, ValueError); a record, once queued, is never dropped (short of a crash, or a
write failure that stops the journal and fails every waiting caller). A payload may instead be
a `Deferred` (a function that makes it): the writer thread calls it with the rest of its group,
where the work runs in one tight loop instead of between the request's other steps. It makes
the encoded payload, canonical as `encode_payload` would write it. Should it raise, or make
something else, the record is still written, its payload then `{"payload_error": message}`
(and the error logged). A record may carry a `key` (a prediction's request id): not written,
it reaches `on_append` with the record, so that an index needs no payload decoded.

Back-pressure. At most `queue_limit` records wait for the writer. When the queue is full,
`append` either waits, in arrival order, until the writer has taken a group and made room
(`when_full = "wait"`: callers slow down, nothing is dropped) or raises JournalFull
(`when_full = "fail"`: fail closed, a retryable UNAVAILABLE). `room(n)` says, without the
lock, whether n more records would be queued at once; a caller that queues many with
`extend_nowait` asks it first and, when there is none, appends through `append` instead. What
others queue between the two calls can take the queue past the limit by the records of that
call (one loop pass's, for the request path), never further: the next `room` says no.
`stats()` reports the queue depth,
the number of callers held back and the lag (age of the oldest record not yet committed).

The writer thread takes everything queued (up to `max_group` records) as one group, encodes,
chains and writes each stream's part with one write, syncs per policy, then commits: it calls
`on_append(appended)` for each stream's part, publishes the new heads to readers, and
resolves the callers' futures with one `call_soon_threadsafe` per event loop and group. While it
syncs, the next group gathers: under load, many records share one fsync (group commit).

Durability policies (`fsync`), the trade-off between throughput, latency and what a power loss
can take (a process crash, kill -9 included, loses nothing that was written to the OS):

* "batch": one fdatasync per stream per group, before commit. Durable appends return only for
  records on stable storage; throughput comes from group size, not from skipping syncs.
* "interval": groups are written at once but synced at most every `fsync_interval_ms`; commit
  follows the sync. Fewer syncs under a trickle of small groups; durable appends wait up to
  the interval; a power loss takes at most the last interval's records, none acknowledged.
* "off": never synced while running (close() still syncs); commit follows the write. Durable
  appends then mean "handed to the OS": a power loss can take what the OS had not flushed.
  For tests and throwaway set-ups only.

Opening scans every segment. A torn tail is cut (and logged, and listed in `repairs`) unless
`repair_torn_tail` is off, when it stops start-up like damage does; damage raises
JournalCorrupt naming the first bad record unless `accept_damage` is set, in which case every
finding is logged, listed in `damage`, and the journal opens: intact records stay readable
(`read` skips what it cannot read), and appends continue the chain from the last intact record.

Retention. `mark_exported(stream, seq)` records, in the stream's manifest, that an exporter has
safely copied every record up to `seq` (a segment counts as exported once all its records are).
`expired(stream, now_ns)` names the closed segments retention may delete: a leading run, each
exported and with its newest record older than `retention_days` (default 183: the EU AI Act,
Art. 19, asks providers of high-risk AI systems to keep logs for at least six months); never
the active segment. `retire(stream, seq)` deletes such a run. The journal knows nothing of the
Merkle trees: the ledger (ledger.py, retention.py) decides what to retire, attests it, and
restarts its trees after it.

Threads. The queue, the callers held back and the stats counters are shared between callers
and the writer thread under one lock, held only for deque operations; the segment files and
each stream's chain position belong to the writer thread; each stream's `_View` (committed
head and segment list) is replaced whole under the lock and read without it; manifests are
written under their own lock. `read`, `verify`, `mark_exported`, `expired` and `retire` do
blocking file I/O on the calling thread: from the event loop, run them in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, overload

from gateway.config import ConfigError
from gateway.errors import ErrorKind, GatewayError
from gateway.governance.records import (
    MAX_PAYLOAD_BYTES,
    JournalCorrupt,
    JournalError,
    MalformedRecord,
    Record,
    check_name,
    decode_body,
    encode_body,
    encode_payload,
)
from gateway.governance.segments import (
    Frame,
    Manifest,
    Segment,
    SegmentFile,
    StreamScan,
    TornTail,
    cut_tail,
    encode_frame,
    expired_segments,
    fsync_dir,
    iter_frames,
    read_manifest,
    read_segment,
    retire,
    scan_stream,
    write_manifest,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Appended:
    """One stream's part of a committed group, in seq order, as `on_append` is told of it:
    bodies and keys, not Records, which the writer makes only for callers that wait for theirs
    (most records are predictions that nobody reads back)."""

    stream: str
    first_seq: int
    bodies: list[bytes]  # the records' bodies: the Merkle leaf data
    keys: list[str]  # the appenders' keys, "" where none was given

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.bodies) - 1


OnAppend = Callable[[Appended], None]
Clock = Callable[[], int]  # wall-clock nanoseconds since the epoch, like time.time_ns
FSYNC_POLICIES = ("batch", "interval", "off")
WHEN_FULL = ("wait", "fail")
_STREAM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class JournalOptions:
    """How a journal writes; every field has a default (a future `[journal]` config section)."""

    streams: tuple[str, ...] = ("admin", "predictions")
    fsync: str = "batch"  # batch | interval | off (see the module doc for the trade-off)
    fsync_interval_ms: int = 10  # with fsync = interval: the longest a written record waits
    segment_bytes: int = 64 * 1024 * 1024  # a segment is closed once it reaches this size
    queue_limit: int = 65_536  # records waiting for the writer; beyond, callers wait or fail
    when_full: str = "wait"  # wait (back-pressure) | fail (JournalFull, fail closed)
    max_group: int = 4096  # records the writer takes as one group commit
    # records nobody waits for (durable=False) are gathered this long before they are written,
    # so that a stream of them costs one wake-up and one sync per window, not per record; a
    # crash loses at most this window more of them (durable records are never held back)
    async_window_ms: int = 20
    # a durable record waits at most this long for others to share its sync: fewer fsyncs under
    # concurrent durable traffic, at the price of this much latency (0: write at once)
    durable_window_us: int = 0
    retention_days: int = 183  # exported segments older than this may be deleted
    repair_torn_tail: bool = True  # cut a torn tail on open (else refuse to open)
    accept_damage: bool = False  # open a damaged journal anyway (operator's explicit choice)

    def __post_init__(self) -> None:
        if not self.streams or len(set(self.streams)) != len(self.streams):
            raise ConfigError("journal.streams must list distinct stream names")
        for name in self.streams:
            if not isinstance(name, str) or not _STREAM_NAME.match(name):
                raise ConfigError(f"journal stream name {name!r} must match {_STREAM_NAME.pattern}")
        if self.fsync not in FSYNC_POLICIES:
            raise ConfigError(f"journal.fsync must be batch, interval or off, not {self.fsync!r}")
        if self.when_full not in WHEN_FULL:
            raise ConfigError(f"journal.when_full must be wait or fail, not {self.when_full!r}")
        for name in ("fsync_interval_ms", "segment_bytes", "queue_limit", "max_group"):
            if getattr(self, name) < 1:
                raise ConfigError(f"journal.{name} must be >= 1")
        if self.async_window_ms < 0:
            raise ConfigError("journal.async_window_ms must be >= 0")
        if self.durable_window_us < 0:
            raise ConfigError("journal.durable_window_us must be >= 0")
        if self.retention_days < 0:
            raise ConfigError("journal.retention_days must be >= 0")


class JournalFull(JournalError, GatewayError):
    """The writer's queue is full and the caller may not wait (when_full = fail, or nowait)."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(self, stream: str, limit: int) -> None:
        super().__init__(f"the journal is overloaded ({limit} records queued); retry later")
        self.stream = stream
        self.limit = limit


class JournalClosed(JournalError, GatewayError):
    """The journal was closed, or its writer stopped after an error (`cause` says which)."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


@dataclass(frozen=True, slots=True)
class JournalStats:
    queued: int  # records in the writer's queue
    waiting: int  # callers held back because the queue is full
    in_flight: int  # taken by the writer, not yet committed (being written or awaiting sync)
    lag_s: float  # age of the oldest record not yet committed (0.0 when none)
    records: int  # records committed since open
    groups: int  # group commits since open
    fsyncs: int  # file syncs since open
    bytes: int  # bytes written since open
    largest_group: int  # most records committed at once
    heads: dict[str, int]  # committed head seq per stream


# queue entry states (changed under the journal lock)
_QUEUED, _WAITING, _DROPPED = 0, 1, 2


# A payload made on the writer thread, encoded (module docstring).
Deferred = Callable[[], bytes]
# what an append takes: a dict to encode, the bytes `encode_payload` made of one (trusted: the
# request path encodes its payloads from a template), or a Deferred
Payload = dict[str, Any] | bytes | Deferred


@dataclass(slots=True, eq=False)
class _Entry:
    """One record on its way to the writer, with what its caller waits on."""

    stream: str
    kind: str
    actor: str
    payload_json: bytes | Deferred  # encoded by the caller, or made by the writer
    time_ns: int  # wall clock at append
    queued_ns: int  # monotonic clock at append (for the lag)
    durable: bool
    key: str = ""  # handed to on_append with the record, not written
    loop: asyncio.AbstractEventLoop | None = None
    # durable: resolved with the Record at commit; async mode held back: resolved with None
    # once admitted to the queue; None when nobody waits
    future: asyncio.Future[Any] | None = None
    state: int = _QUEUED


@dataclass(frozen=True, slots=True)
class _View:
    """A stream as readers see it: committed records only. Replaced whole, read without a lock."""

    head_seq: int
    head_hash: str
    closed: tuple[Segment, ...]
    active: Segment | None

    def segments(self) -> tuple[Segment, ...]:
        return self.closed if self.active is None else (*self.closed, self.active)


class _Stream:
    def __init__(self, name: str, directory: Path, manifest: Manifest, scan: StreamScan) -> None:
        # set at open
        self.name = name
        self.directory = directory
        # writer thread only: the chain position of what has been written, committed or not,
        # and the active segment's file and counts
        self.seq = scan.head_seq
        self.hash = scan.head_hash
        self.time_ns = scan.head_time_ns
        self.file: SegmentFile | None = None
        self.file_records = 0
        self.file_first_time_ns = 0
        self.closed_uncommitted: list[Segment] = []  # rotated out since the last commit
        segments = scan.segments
        last = segments[-1] if segments else None
        if last is not None:
            consistent = (
                last.last_seq == scan.head_seq
                if last.records
                else last.first_seq == scan.head_seq + 1
            )
            if not consistent:
                raise JournalCorrupt(
                    name,
                    last.path,
                    None,
                    scan.head_seq + 1,
                    "cannot append: the last segment does not end with the last intact record",
                )
            self.file = SegmentFile.reopen(last)
            self.file_records = last.records
            self.file_first_time_ns = last.first_time_ns
            segments = segments[:-1]
        # published under the journal lock, read without it
        self.view = _View(self.seq, self.hash, tuple(segments), self.active_segment())
        # replaced under the journal's manifest lock
        self.manifest = manifest

    def active_segment(self) -> Segment | None:
        """Writer thread: the active segment as of what has been written."""
        file = self.file
        if file is None:
            return None
        has = self.file_records > 0
        return Segment(
            first_seq=file.first_seq,
            path=file.path,
            size=file.size,
            records=self.file_records,
            last_seq=self.seq if has else file.first_seq - 1,
            last_hash=self.hash if has else "",
            first_time_ns=self.file_first_time_ns,
            last_time_ns=self.time_ns if has else 0,
        )


def _resolve(pairs: list[tuple[asyncio.Future[Any], Any]]) -> None:
    """Event loop: settle the futures of one group (values or exceptions)."""
    for future, value in pairs:
        if not future.done():
            if isinstance(value, BaseException):
                future.set_exception(value)
            else:
                future.set_result(value)


def made_payload(deferred: Deferred, stream: str, kind: str) -> bytes:
    """The encoded payload a Deferred makes, or, when it raises or makes one that cannot be
    journalled, a payload saying so (logged): the record is written either way. The writer
    thread calls it for deferred payloads; a caller that makes its payload now, for the same
    guarantee."""
    try:
        payload_json = deferred()
        if type(payload_json) is not bytes:
            raise TypeError(f"made {type(payload_json).__name__}, not an encoded payload")
        if len(payload_json) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"made {len(payload_json)} bytes, over {MAX_PAYLOAD_BYTES}")
    except Exception as error:
        logger.exception("a %s payload (%s) failed; journalled as the error", kind, stream)
        return encode_payload({"payload_error": f"{type(error).__name__}: {error}"})
    return payload_json


def _settle(items: Iterable[tuple[_Entry, Any]]) -> None:
    """Any thread: hand results to their callers' loops, one call_soon_threadsafe per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any]]] = {}
    for entry, value in items:
        if entry.future is not None and entry.loop is not None:
            by_loop.setdefault(entry.loop, []).append((entry.future, value))
    for loop, pairs in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, pairs)


def _lock_root(root: Path) -> int:
    """Hold an exclusive lock on the journal folder for this process's lifetime (or close())."""
    fd = os.open(root / "LOCK", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalError(f"the journal at {root} is open in another process") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


class Journal:
    """An open journal; see the module doc. Create with `Journal.open`, finish with `close`."""

    def __init__(
        self,
        root: Path,
        options: JournalOptions,
        streams: dict[str, _Stream],
        lock_fd: int,
        on_append: OnAppend | None,
        repairs: list[TornTail],
        damage: list[JournalCorrupt],
        clock: Clock,
    ) -> None:
        # set at open, read-only afterwards
        self.root = root
        self.options = options
        self.clock = clock
        self.repairs = repairs  # torn tails cut at open
        self.damage = damage  # damage accepted at open (accept_damage)
        self._streams = streams
        self._lock_fd = lock_fd
        self._on_append = on_append
        self._limit = options.queue_limit
        self._fail_when_full = options.when_full == "fail"
        self._max_group = options.max_group
        self._policy = options.fsync
        self._interval_s = options.fsync_interval_ms / 1000
        self._window_s = options.async_window_ms / 1000
        self._durable_window_s = options.durable_window_us / 1e6
        # shared between callers and the writer, under _lock
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._queue: deque[_Entry] = deque()
        self._waiting: deque[_Entry] = deque()  # held back by a full queue, in arrival order
        self._idle = False  # the writer sleeps on _wakeup
        self._gathering = False  # the writer waits out the async window on _wakeup
        self._urgent = False  # a queued record has a caller waiting for it: no window
        self._urgent_since = 0.0  # monotonic time the oldest such record was queued
        self._closing = False
        self._failure: JournalClosed | None = None  # set once: closed, or the writer failed
        self._in_flight = 0
        self._in_flight_since = 0  # monotonic ns of the oldest record in flight
        self._committed = self._groups = self._fsyncs = self._bytes = self._largest = 0
        # manifests (mark_exported, retire)
        self._manifest_lock = threading.Lock()
        # writer thread only
        # per stream part written: its entries, what on_append is told, the Records of the
        # entries whose callers wait for them
        self._uncommitted: list[tuple[list[_Entry], Appended, list[tuple[_Entry, Record]]]] = []
        self._writing: Sequence[_Entry] = ()
        self._last_sync = 0.0
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    # --- opening and closing ----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        root: Path | str,
        options: JournalOptions | None = None,
        *,
        on_append: OnAppend | None = None,
        clock: Clock = time.time_ns,
    ) -> Journal:
        """Open (or create) the journal in `root`, check it, and start its writer thread.

        Blocking: reads and verifies every segment. Raises JournalCorrupt for damage (unless
        options.accept_damage) and for a torn tail when options.repair_torn_tail is off;
        JournalError when another process has the journal open. `on_append(appended)` is
        called on the writer thread after each commit, with each stream's records of the
        group in seq order (`Appended`): it must be quick, must not wait on the journal, and
        an exception from it stops the journal (state derived from the records would
        otherwise diverge).
        `clock` stamps each record's time_ns (tests inject one to age records without waiting).
        """
        options = options or JournalOptions()
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        lock_fd = _lock_root(root)
        repairs: list[TornTail] = []
        damage: list[JournalCorrupt] = []
        streams: dict[str, _Stream] = {}
        try:
            for name in options.streams:
                directory = root / name
                directory.mkdir(exist_ok=True)
                manifest = read_manifest(name, directory)
                scan = scan_stream(name, directory, manifest)
                if scan.damage:
                    if not options.accept_damage:
                        raise scan.damage[0]
                    for found in scan.damage:
                        logger.error("%s (opening anyway: accept_damage is set)", found)
                    damage.extend(scan.damage)
                torn = scan.torn_tail
                if torn is not None:
                    if not options.repair_torn_tail:
                        raise JournalCorrupt(
                            name,
                            torn.segment,
                            torn.offset,
                            torn.after_seq + 1,
                            f"torn tail of {torn.length} bytes ({torn.reason});"
                            " repair_torn_tail would cut it",
                        )
                    cut_tail(torn.segment, torn.offset)
                    logger.warning("%s: cut", torn.describe())
                    repairs.append(torn)
                # segments retired in the manifest whose deletion a crash interrupted (kept as
                # evidence when the stream is damaged)
                leftovers = 0
                for segment in scan.segments[:-1]:
                    if scan.damage or not segment.records or segment.last_seq > manifest.base_seq:
                        break
                    segment.path.unlink()
                    leftovers += 1
                if leftovers:
                    fsync_dir(directory)
                    scan.segments = scan.segments[leftovers:]
                streams[name] = _Stream(name, directory, manifest, scan)
        except BaseException:
            for stream in streams.values():
                if stream.file is not None:
                    stream.file.close()
            os.close(lock_fd)
            raise
        return cls(root, options, streams, lock_fd, on_append, repairs, damage, clock)

    def close(self) -> None:
        """Write and sync everything queued (callers held back included), stop the writer and
        release the folder. Blocking; idempotent. Later appends raise JournalClosed."""
        with self._lock:
            if self._closing:
                already = True
            else:
                already = False
                self._closing = True
                if self._failure is None:
                    self._failure = JournalClosed("the journal is closed")
                self._wakeup.notify()
        if already:
            self._thread.join()
            return
        self._thread.join()
        try:
            for stream in self._streams.values():
                if stream.file is not None:
                    if self._policy == "off":
                        stream.file.sync()
                    stream.file.close()
        finally:
            os.close(self._lock_fd)

    async def aclose(self) -> None:
        """close() without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- appending --------------------------------------------------------------------------

    def _check_names(self, stream: str, kind: str, actor: str) -> None:
        if stream not in self._streams:
            raise ValueError(f"unknown journal stream {stream!r}")
        check_name("kind", kind)
        check_name("actor", actor)

    def _entry(
        self,
        stream: str,
        kind: str,
        actor: str,
        payload: Payload,
        durable: bool,
        key: str = "",
    ) -> _Entry:
        self._check_names(stream, kind, actor)
        return _Entry(
            stream,
            kind,
            actor,
            payload if type(payload) is bytes or callable(payload) else encode_payload(payload),
            self.clock(),
            time.monotonic_ns(),
            durable,
            key,
        )

    @overload
    async def append(
        self,
        stream: str,
        kind: str,
        actor: str,
        payload: Payload,
        *,
        durable: Literal[True] = ...,
        key: str = ...,
    ) -> Record: ...

    @overload
    async def append(
        self,
        stream: str,
        kind: str,
        actor: str,
        payload: Payload,
        *,
        durable: Literal[False],
        key: str = ...,
    ) -> None: ...

    async def append(
        self,
        stream: str,
        kind: str,
        actor: str,
        payload: Payload,
        *,
        durable: bool = True,
        key: str = "",
    ) -> Record | None:
        """Append a record to `stream`; see the module doc for the modes and `key`.

        durable=True returns the committed Record; durable=False returns None once the record
        is queued. Raises ValueError (unknown stream, oversized payload), TypeError (a payload
        orjson cannot serialize), JournalFull (queue full and when_full = fail), JournalClosed.
        Cancelling a call that is held back by a full queue withdraws its record; once queued,
        the record is written whatever happens to the caller.
        """
        entry = self._entry(stream, kind, actor, payload, durable, key)
        loop = asyncio.get_running_loop()
        entry.loop = loop
        if durable:
            entry.future = loop.create_future()
        with self._lock:
            if self._failure is not None:
                raise JournalClosed(str(self._failure), self._failure.cause)
            if len(self._queue) < self._limit and not self._waiting:
                self._queue.append(entry)
                first_urgent = durable and not self._urgent
                if first_urgent:
                    self._urgent = True
                    self._urgent_since = time.monotonic()
                full = len(self._queue) >= self._max_group
                if self._idle or (self._gathering and (first_urgent or full)):
                    self._wakeup.notify()
            elif self._fail_when_full:
                raise JournalFull(stream, self._limit)
            else:
                entry.state = _WAITING
                if entry.future is None:
                    entry.future = loop.create_future()
                self._waiting.append(entry)
        future = entry.future
        if future is None:
            return None
        try:
            result = await future
        except asyncio.CancelledError:
            with self._lock:
                if entry.state == _WAITING:
                    entry.state = _DROPPED
            raise
        return result if durable else None

    def room(self, records: int) -> bool:
        """Whether `records` more records would be queued now without waiting: a reading
        without the lock, for `extend_nowait`'s caller (module doc, Back-pressure)."""
        return (
            self._failure is None
            and not self._waiting
            and len(self._queue) + records <= self._limit
        )

    def extend_nowait(
        self, stream: str, kind: str, items: Sequence[tuple[str, bytes | Deferred, str]]
    ) -> None:
        """Queue one record per (actor, encoded or deferred payload, key) of `items`, in order,
        all stamped with one clock reading; without checking the limit (ask `room` first).
        Raises JournalClosed, and what `append` raises for a bad stream, kind or actor (then
        nothing is queued)."""
        checked: set[str] = set()
        for actor, _, _ in items:
            if actor not in checked:
                self._check_names(stream, kind, actor)
                checked.add(actor)
        now, queued = self.clock(), time.monotonic_ns()
        entries = [
            _Entry(stream, kind, actor, make, now, queued, False, key) for actor, make, key in items
        ]
        with self._lock:
            if self._failure is not None:
                raise JournalClosed(str(self._failure), self._failure.cause)
            self._queue.extend(entries)
            if self._idle:
                self._wakeup.notify()

    # --- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._cycle():
                pass
        except Exception as error:
            self._fail(error)

    def _cycle(self) -> bool:
        """Take a group, write it, commit per policy. Returns False once closed and drained."""
        interval = self._policy == "interval"
        with self._lock:
            while not self._queue:
                if self._uncommitted:
                    remaining = self._last_sync + self._interval_s - time.monotonic()
                    if self._closing or remaining <= 0:
                        break
                elif self._closing:
                    return False
                else:
                    remaining = None
                self._idle = True
                self._wakeup.wait(remaining)
                self._idle = False
            if self._queue and (self._window_s or self._durable_window_s):
                self._gather()
            batch, admitted = self._take()
        if admitted:
            _settle((entry, None) for entry in admitted)
        if batch:
            self._writing = batch
            self._write(batch)
            self._writing = ()
        if self._uncommitted and (
            not interval or self._closing or time.monotonic() >= self._last_sync + self._interval_s
        ):
            self._commit()
        return True

    def _gather(self) -> None:
        """Under the lock: let records pile up into one group: those nobody waits for for the
        async window, a durable one for the (much shorter) durable window from its arrival;
        not at all once callers are held back by a full queue, the journal closes or the group
        is full."""
        started = time.monotonic()
        self._gathering = True
        while not (self._waiting or self._closing or len(self._queue) >= self._max_group):
            if self._urgent:
                deadline = self._urgent_since + self._durable_window_s
            else:
                deadline = started + self._window_s
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._wakeup.wait(remaining)
        self._gathering = False

    def _take(self) -> tuple[Sequence[_Entry], list[_Entry]]:
        """Under the lock: the next group, and the held-back async callers now admitted."""
        queue = self._queue
        if len(queue) <= self._max_group:
            batch: Sequence[_Entry] = queue
            self._queue = deque()
        else:
            batch = [queue.popleft() for _ in range(self._max_group)]
        admitted: list[_Entry] = []
        waiting = self._waiting
        while waiting and len(self._queue) < self._limit:
            entry = waiting.popleft()
            if entry.state == _DROPPED:
                continue
            entry.state = _QUEUED
            self._queue.append(entry)
            if not entry.durable:
                admitted.append(entry)
        self._urgent = any(entry.durable for entry in self._queue)
        self._urgent_since = time.monotonic()
        if batch:
            if not self._in_flight:
                self._in_flight_since = batch[0].queued_ns
            self._in_flight += len(batch)
        return batch, admitted

    def _write(self, batch: Sequence[_Entry]) -> None:
        """Encode, chain and write one group, one write per stream."""
        parts: dict[str, list[_Entry]] = {}
        for entry in batch:
            parts.setdefault(entry.stream, []).append(entry)
        for name, entries in parts.items():
            stream = self._streams[name]
            file = stream.file
            if file is None or file.size >= self.options.segment_bytes:
                file = self._rotate(stream)
            frames: list[bytes] = []
            bodies: list[bytes] = []
            made: list[tuple[_Entry, Record]] = []
            first_seq = stream.seq + 1
            seq, prev, last_time = stream.seq, stream.hash, stream.time_ns
            for entry in entries:
                seq += 1
                at = entry.time_ns if entry.time_ns > last_time else last_time
                kind, actor, payload_json = entry.kind, entry.actor, entry.payload_json
                if callable(payload_json):
                    payload_json = made_payload(payload_json, name, kind)
                body = encode_body(seq, at, name, kind, actor, payload_json, prev)
                digest = sha256(body).digest()
                frames.append(encode_frame(body, digest))
                bodies.append(body)
                digest_hex = digest.hex()
                if entry.durable:
                    made.append((entry, Record(seq, at, name, kind, actor, prev, digest_hex, body)))
                prev, last_time = digest_hex, at
                if seq == first_seq and stream.file_records == 0:
                    stream.file_first_time_ns = at
            data = b"".join(frames)
            file.write(data)
            stream.file_records += len(bodies)
            stream.seq, stream.hash, stream.time_ns = seq, prev, last_time
            self._bytes += len(data)  # read by stats() without the lock: an int, monotone
            keys = [entry.key for entry in entries]
            self._uncommitted.append((entries, Appended(name, first_seq, bodies, keys), made))

    def _rotate(self, stream: _Stream) -> SegmentFile:
        """Close the active segment (synced unless fsync = off) and start the next one."""
        sync = self._policy != "off"
        old = stream.active_segment()
        if stream.file is not None and old is not None:
            if sync:
                stream.file.sync()
                self._fsyncs += 1
            stream.file.close()
            stream.closed_uncommitted.append(old)
        file = SegmentFile.create(stream.directory, stream.seq + 1, sync_dir=sync)
        stream.file = file
        stream.file_records = 0
        stream.file_first_time_ns = 0
        return file

    def _commit(self) -> None:
        """Sync what was written, tell on_append, publish to readers, resolve the callers."""
        groups = self._uncommitted  # cleared once synced: if a sync fails, _fail sees them
        touched = {part.stream: self._streams[part.stream] for _, part, _ in groups}
        if self._policy != "off" or self._closing:
            for stream in touched.values():
                if stream.file is not None:
                    stream.file.sync()
                    self._fsyncs += 1
        self._uncommitted = []
        self._last_sync = time.monotonic()
        callback_error: Exception | None = None
        if self._on_append is not None:
            for _, part, _ in groups:
                try:
                    self._on_append(part)
                except Exception as error:
                    callback_error = error
                    break
        count = sum(len(part.bodies) for _, part, _ in groups)
        stop: JournalError | None = None
        if callback_error is not None:
            stop = JournalError(f"on_append raised: {callback_error!r}")
            stop.__cause__ = callback_error
        with self._lock:
            if stop is not None:  # before the callers hear of their records: nothing slips in
                self._failure = JournalClosed(f"the journal stopped after an error: {stop}", stop)
            for stream in touched.values():
                closed = stream.view.closed
                if stream.closed_uncommitted:
                    closed = (*closed, *stream.closed_uncommitted)
                    stream.closed_uncommitted.clear()
                stream.view = _View(stream.seq, stream.hash, closed, stream.active_segment())
            self._in_flight -= count
            self._committed += count
            self._groups += 1
            self._largest = max(self._largest, count)
        _settle(pair for _, _, made in groups for pair in made)
        if stop is not None:
            raise stop

    def _fail(self, error: Exception) -> None:
        """The writer cannot go on: fail every caller still waiting, refuse new appends."""
        failure = JournalClosed(f"the journal stopped after an error: {error}", error)
        with self._lock:
            self._failure = failure
            unsynced = (e for entries, _, _ in self._uncommitted for e in entries)
            waiting = (e for e in self._waiting if e.state != _DROPPED)
            lost = list(dict.fromkeys([*unsynced, *self._writing, *self._queue, *waiting]))
            self._queue.clear()
            self._waiting.clear()
            self._uncommitted = []
            self._in_flight = 0
        logger.critical(
            "journal writer stopped, %d records not committed: %s", len(lost), error, exc_info=error
        )
        _settle((entry, failure) for entry in lost)

    # --- reading ------------------------------------------------------------------------------

    def _stream(self, name: str) -> _Stream:
        try:
            return self._streams[name]
        except KeyError:
            raise ValueError(f"unknown journal stream {name!r}") from None

    def head(self, stream: str) -> tuple[int, str]:
        """(seq, hash) of the stream's last committed record; (0, GENESIS) when it is empty."""
        view = self._stream(stream).view
        return view.head_seq, view.head_hash

    def read(
        self,
        stream: str,
        since_seq: int = 1,
        until_seq: int | None = None,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> Iterator[Record]:
        """Committed records of `stream` with since_seq <= seq <= until_seq and, when given,
        since_ns <= time_ns < until_ns, in seq order. Lazy and blocking (file I/O).

        Each frame's hash and each chain link is checked again as it is read: damage raises
        JournalCorrupt (with accept_damage, unreadable records are skipped instead). Records
        deleted by retention are not returned.
        """
        state = self._stream(stream)
        segments = state.view.segments()
        # the later of: the last segment starting at or before since_seq, and the last one
        # starting at or before since_ns (time never decreases along a stream)
        start = 0
        for position, segment in enumerate(segments):
            if segment.records and segment.first_seq <= since_seq:
                start = position
        if since_ns is not None:
            for position, segment in enumerate(segments):
                if segment.records and segment.first_time_ns <= since_ns:
                    start = max(start, position)
        if start > 0:
            prev: str | None = segments[start - 1].last_hash or None
        elif segments and segments[0].first_seq == state.manifest.base_seq + 1:
            prev = state.manifest.base_hash
        else:
            prev = None
        return self._records(
            state, segments[start:], prev, since_seq, until_seq, since_ns, until_ns
        )

    def _records(
        self,
        state: _Stream,
        segments: Sequence[Segment],
        prev: str | None,
        since_seq: int,
        until_seq: int | None,
        since_ns: int | None,
        until_ns: int | None,
    ) -> Iterator[Record]:
        lenient = self.options.accept_damage
        name = state.name
        last_seq = segments[0].first_seq - 1 if segments else 0
        for segment in segments:
            if segment.size == 0:
                continue
            try:
                data = read_segment(segment.path, segment.size)
            except FileNotFoundError:
                if segment.last_seq <= state.manifest.base_seq:
                    prev = None
                    continue  # deleted by retention while we read
                raise JournalCorrupt(
                    name, segment.path, None, segment.first_seq, "the segment file is missing"
                ) from None
            if len(data) < segment.size and not lenient:
                raise JournalCorrupt(
                    name,
                    segment.path,
                    len(data),
                    None,
                    f"the segment is {len(data)} bytes, {segment.size} were committed",
                )
            for item in iter_frames(data):
                record: Record | None = None
                if isinstance(item, Frame):
                    try:
                        record = decode_body(item.body, item.digest)
                    except MalformedRecord as error:
                        problem = str(error)
                    else:
                        problem = (
                            ""
                            if prev is None or record.prev == prev
                            else f"broken chain: prev is not the hash of seq {record.seq - 1}"
                        )
                else:
                    problem = item.reason
                if problem and not lenient:
                    seq = record.seq if record is not None else last_seq + 1
                    raise JournalCorrupt(name, segment.path, item.offset, seq, problem)
                if record is None:  # unreadable, skipped (accept_damage)
                    prev = None
                    continue
                prev, last_seq = record.hash, record.seq
                if record.seq < since_seq or (since_ns is not None and record.time_ns < since_ns):
                    continue
                if (until_seq is not None and record.seq > until_seq) or (
                    until_ns is not None and record.time_ns >= until_ns
                ):
                    return
                yield record

    def verify(self) -> dict[str, StreamScan]:
        """Re-read and check every committed record of every stream (blocking).

        Raises JournalCorrupt for damage found now (damage accepted at open is reported in the
        scans instead), including records committed earlier and now missing from the end.
        """
        scans: dict[str, StreamScan] = {}
        for name, state in self._streams.items():
            view = state.view
            listed = [(s.first_seq, s.path, s.size) for s in view.segments()]
            scan = scan_stream(name, state.directory, state.manifest, listed)
            if scan.damage and not self.options.accept_damage:
                raise scan.damage[0]
            if scan.torn_tail is not None or scan.head_seq < view.head_seq:
                torn = scan.torn_tail
                raise JournalCorrupt(
                    name,
                    torn.segment if torn else None,
                    torn.offset if torn else None,
                    scan.head_seq + 1,
                    f"records {scan.head_seq + 1}..{view.head_seq} were committed and are gone",
                )
            scans[name] = scan
        return scans

    # --- export and retention -------------------------------------------------------------------

    def mark_exported(self, stream: str, until_seq: int) -> None:
        """Record (durably) that every record of `stream` up to `until_seq` has been exported.

        Blocking. Monotone: a lower seq than already marked changes nothing. Raises ValueError
        for a seq beyond the committed head."""
        state = self._stream(stream)
        with self._manifest_lock:
            if until_seq > state.view.head_seq:
                raise ValueError(
                    f"cannot mark seq {until_seq} exported: stream {stream!r} ends at seq "
                    f"{state.view.head_seq}"
                )
            if until_seq <= state.manifest.exported_through:
                return
            manifest = dataclasses.replace(state.manifest, exported_through=until_seq)
            write_manifest(state.directory, manifest)
            state.manifest = manifest

    def manifest(self, stream: str) -> Manifest:
        """The stream's manifest: its retention base and how far it was exported."""
        return self._stream(stream).manifest

    def expired(self, stream: str, now_ns: int) -> list[Segment]:
        """The closed segments of `stream`, oldest first, that retention may delete at `now_ns`:
        a leading run, each exported and with its newest record older than retention_days.
        Never the active segment. Deletes nothing."""
        state = self._stream(stream)
        cutoff = now_ns - self.options.retention_days * _NS_PER_DAY
        return expired_segments(state.view.segments(), state.manifest, cutoff)

    def retire(self, stream: str, through_seq: int) -> list[Path]:
        """Delete the leading closed segments of `stream` up to the one that ends at
        `through_seq`, recording that record as the stream's retention base first. Returns the
        deleted paths (none when they are gone already). Blocking.

        Checks only what the journal knows: the records are exported, the segments closed. Age
        is the caller's policy (see `expired`). Raises ValueError otherwise, or when no closed
        segment ends at `through_seq`."""
        state = self._stream(stream)
        with self._manifest_lock:
            manifest = state.manifest
            if through_seq <= manifest.base_seq:
                return []
            if through_seq > manifest.exported_through:
                raise ValueError(
                    f"stream {stream!r}: cannot retire up to seq {through_seq}, exported only "
                    f"through seq {manifest.exported_through}"
                )
            closed = state.view.closed
            count = next((i + 1 for i, s in enumerate(closed) if s.last_seq == through_seq), 0)
            if not count:
                raise ValueError(f"stream {stream!r}: no closed segment ends at seq {through_seq}")
            doomed = closed[:count]
            with self._lock:  # the writer may have closed more segments since: keep those
                view = state.view
                state.view = dataclasses.replace(view, closed=view.closed[count:])
            state.manifest = retire(state.directory, manifest, doomed)
        logger.info(
            "journal stream '%s': retention deleted %d segments up to seq %d",
            stream,
            count,
            through_seq,
        )
        return [segment.path for segment in doomed]

    # --- observing --------------------------------------------------------------------------------

    def stats(self) -> JournalStats:
        """Queue depth, callers held back, lag and counters (cheap; any thread)."""
        now = time.monotonic_ns()
        with self._lock:
            if self._in_flight:
                oldest = self._in_flight_since
            elif self._queue:
                oldest = self._queue[0].queued_ns
            elif self._waiting:
                oldest = self._waiting[0].queued_ns
            else:
                oldest = now
            return JournalStats(
                queued=len(self._queue),
                waiting=len(self._waiting),
                in_flight=self._in_flight,
                lag_s=(now - oldest) / 1e9,
                records=self._committed,
                groups=self._groups,
                fsyncs=self._fsyncs,
                bytes=self._bytes,
                largest_group=self._largest,
                heads={name: s.view.head_seq for name, s in self._streams.items()},
            )


def verify_journal(
    root: Path | str, streams: Iterable[str] | None = None, *, allow_torn_tail: bool = False
) -> dict[str, StreamScan]:
    """Check a journal's files without opening it for writing and without changing a file
    (what `modelgate journal verify` runs). Streams default to every folder under `root`.

    Raises JournalCorrupt naming the first damage, or the torn tail unless `allow_torn_tail`
    (a journal that is being written may show one: its last write in progress).
    """
    root = Path(root)
    names = (
        list(streams)
        if streams is not None
        else sorted(p.name for p in root.iterdir() if p.is_dir())
    )
    scans: dict[str, StreamScan] = {}
    for name in names:
        directory = root / name
        if not directory.is_dir():
            raise JournalError(f"the journal at {root} has no stream {name!r}")
        scan = scan_stream(name, directory, read_manifest(name, directory))
        if scan.damage:
            raise scan.damage[0]
        torn = scan.torn_tail
        if torn is not None and not allow_torn_tail:
            raise JournalCorrupt(
                name,
                torn.segment,
                torn.offset,
                torn.after_seq + 1,
                f"torn tail of {torn.length} bytes ({torn.reason})",
            )
        scans[name] = scan
    return scans
