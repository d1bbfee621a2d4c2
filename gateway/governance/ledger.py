"""The ledger: the journal, a Merkle tree per stream over its records, and signed checkpoints.

Every record's body is one leaf (RFC 9162, `merkle.leaf_hash(body)`); a stream's tree size is its
head seq. Every `checkpoint_every` records, or `checkpoint_interval_s` after the last one when
records came in, and on close, the writer thread signs a checkpoint of each grown stream
(`checkpoints.py`) and appends it, fsynced, to ``<root>/checkpoints/<stream>.jsonl``.

`verify_ledger` checks a ledger at rest: the segments and the chain (`verify_journal`), then each
stored checkpoint's signature and its root against the tree recomputed from the records; a
checkpoint larger than the stream means records were cut off the end. `prove` and
`verify_proof` give and check an inclusion proof of one record against a signed checkpoint,
offline.

Export and retention: `export_records` writes records out for archiving and marks them
exported; `Ledger.apply_retention` deletes what is exported and old enough, attested by a
`retention.applied` admin record (retention.py). Afterwards each stream's tree and chain
restart at its anchor (the last deleted record), so opening, verifying and proving still work
for every record kept, and checkpoints older than the anchor are checked by signature only.
Only the predictions stream is retained: the admin stream is the control plane's history,
replayed in full at every start (control.py), so deleting any of it would change what serves.

Threads: the trees and the checkpoint files belong to the journal's writer thread once the
ledger is open (`_on_append`); `_lock` guards what the event loop or the CLI read of the trees
and the request index, `_checkpoints_lock` the checkpoint files against retention reading them
from a worker thread. Anchors change only in `apply_retention`, one run at a time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from gateway.config import JournalConfig
from gateway.governance import merkle
from gateway.governance.checkpoints import (
    Checkpoint,
    CheckpointError,
    NoteKey,
    load_or_create_key,
    sign_checkpoint,
    verify_checkpoint,
)
from gateway.governance.journal import (
    Appended,
    Clock,
    Journal,
    JournalOptions,
    verify_journal,
)
from gateway.governance.records import Record
from gateway.governance.retention import (
    NS_PER_DAY,
    RETENTION_ACTOR,
    RETENTION_APPLIED,
    Anchor,
    latest_anchors,
    read_anchors,
    records_after,
    retention_payload,
)
from gateway.governance.segments import Segment, fsync_dir

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
ADMIN = "admin"
RETAINED_STREAMS = (PREDICTIONS,)  # not admin: see the module doc
EXPORTS = "exports"  # the export folder's default name in the journal folder
CHECKPOINTS_DIR = "checkpoints"
SIGNING_KEY_FILE = "signing-key.pem"
ORIGIN_PREFIX = "modelgate.journal/"
# request ids kept in memory for trace lookups (the most recent; older ones are found by a scan)
RECENT_REQUESTS = 200_000
# how often the server applies retention: segments age by days, so an hour is prompt enough
RETENTION_PERIOD_S = 3600.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class LedgerError(Exception):
    """A ledger check failed; the message names the stream, the checkpoint or the record."""


@dataclass(frozen=True)
class StoredCheckpoint:
    checkpoint: Checkpoint
    note: str
    # the tree's compact range at that size (unsigned: trusted only once its root is the signed
    # one), so verification can resume there without rereading the leaves before it
    frontier: tuple[bytes, ...]


def _checkpoints_file(root: Path, stream: str) -> Path:
    return root / CHECKPOINTS_DIR / f"{stream}.jsonl"


def read_checkpoints(root: Path, stream: str, key: NoteKey) -> list[StoredCheckpoint]:
    """Every checkpoint stored for `stream`, oldest first, each signature verified by `key`.
    Raises LedgerError naming the line of the first bad one."""
    path = _checkpoints_file(root, stream)
    if not path.exists():
        return []
    stored = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            entry = orjson.loads(line)
            checkpoint = verify_checkpoint(entry["note"], key)
            frontier = tuple(bytes.fromhex(h) for h in entry["frontier"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, CheckpointError) as error:
            raise LedgerError(f"{path} line {number}: {error}") from None
        if checkpoint.origin != ORIGIN_PREFIX + stream:
            raise LedgerError(f"{path} line {number}: origin {checkpoint.origin!r} is not ours")
        stored.append(StoredCheckpoint(checkpoint, entry["note"], frontier))
    return stored


def _size(stored: StoredCheckpoint) -> int:
    return stored.checkpoint.size


def _restore(stream: str, stored: StoredCheckpoint) -> merkle.CompactTree:
    """The tree at a signed checkpoint, from its stored compact range, checked against the
    signed root. Raises LedgerError."""
    try:
        tree = merkle.CompactTree.from_state(stored.checkpoint.size, stored.frontier)
    except ValueError as error:
        raise LedgerError(f"{stream}: the checkpoint's compact range: {error}") from None
    if tree.root() != stored.checkpoint.root:
        raise LedgerError(
            f"{stream}: checkpoint size {stored.checkpoint.size}: its compact range is not the "
            "signed root"
        )
    return tree


@dataclass(frozen=True)
class RetentionReport:
    """What one `apply_retention` run did."""

    deleted: dict[str, list[Path]]  # per stream, the segment files deleted (an empty dict: none)
    anchors: dict[str, Anchor]  # where each stream now starts
    record: Record | None  # the retention.applied record appended; None when nothing new


@dataclass(frozen=True)
class _Retirement:
    anchor: Anchor  # the stream's next anchor (not yet attested)
    segments: tuple[Segment, ...]  # the segments past the current anchor that it deletes


class Ledger:
    def __init__(self, root: Path, config: JournalConfig, clock: Clock = time.time_ns) -> None:
        self.root = root
        self._config = config
        self._private_key = load_or_create_key(Path(config.signing_key or root / SIGNING_KEY_FILE))
        self.key = NoteKey(config.key_name, self._private_key.public_key())
        self._lock = threading.Lock()
        self._checkpoints_lock = threading.Lock()
        self._retention_lock = asyncio.Lock()  # one apply_retention at a time
        self._export_lock = asyncio.Lock()  # one export at a time
        self._trees: dict[str, merkle.CompactTree] = {}
        self._checkpointed: dict[str, tuple[int, float]] = {}  # stream -> (size, monotonic time)
        # request id -> seq in the predictions stream, oldest first. An OrderedDict: a dict's
        # first key is found by scanning past the deleted ones, which at 200,000 ids cost the
        # writer 16 µs per record once full (0.4 µs so)
        self._by_request: OrderedDict[str, int] = OrderedDict()
        self.journal: Journal = Journal.open(
            root, _options(config), on_append=self._on_append, clock=clock
        )
        try:
            self._anchors = read_anchors(self.journal, ADMIN)
            for stream in self.journal.options.streams:
                self._rebuild(stream)
        except BaseException:
            self.journal.close()
            raise

    @classmethod
    def open(cls, config: JournalConfig, *, clock: Clock = time.time_ns) -> Ledger:
        """Blocking (reads every record kept to rebuild the trees): call it in a worker thread.
        Raises JournalCorrupt for damage, records deleted other than by retention included.
        `clock` stamps records and dates retention (tests inject one)."""
        return cls(Path(config.path), config, clock)

    def _rebuild(self, stream: str) -> None:
        anchor = self._anchors[stream]
        tree = anchor.tree()
        ids: list[tuple[str, int]] = []
        for record in records_after(self.journal, stream, anchor):
            tree.append(merkle.leaf_hash(record.body))
            if stream == PREDICTIONS:
                ids.append((_request_id(record.payload), record.seq))
        self._index(ids)
        self._trees[stream] = tree
        stored = read_checkpoints(self.root, stream, self.key)
        last = stored[-1].checkpoint.size if stored else 0
        self._checkpointed[stream] = (last, time.monotonic())

    def _index(self, ids: Iterable[tuple[str, int]]) -> None:
        """Remember (request id, seq) pairs, in seq order; the newest RECENT_REQUESTS stay."""
        by_request = self._by_request
        by_request.update(ids)
        by_request.pop("", None)  # records without an id
        while len(by_request) > RECENT_REQUESTS:
            by_request.popitem(last=False)  # the oldest

    def _on_append(self, appended: Appended) -> None:
        """Writer thread, after the group is synced."""
        stream = appended.stream
        with self._lock:
            tree = self._trees[stream]
            for body in appended.bodies:
                tree.append(merkle.leaf_hash(body))
            if stream == PREDICTIONS:
                self._index(zip(_request_ids(appended), itertools.count(appended.first_seq)))
        size, at = self._checkpointed[stream]
        due = tree.size - size >= self._config.checkpoint_every
        if due or time.monotonic() - at >= self._config.checkpoint_interval_s:
            self._checkpoint(stream)

    def _checkpoint(self, stream: str) -> None:
        with self._lock:
            tree = self._trees[stream]
            checkpoint = Checkpoint(ORIGIN_PREFIX + stream, tree.size, tree.root())
            frontier = [h.hex() for h in tree.state()[1]]
        note = sign_checkpoint(checkpoint, self.key.name, self._private_key)
        path = _checkpoints_file(self.root, stream)
        path.parent.mkdir(exist_ok=True)
        line = {"size": checkpoint.size, "note": note, "frontier": frontier}
        with self._checkpoints_lock, path.open("ab") as file:
            file.write(orjson.dumps(line) + b"\n")
            file.flush()
            os.fsync(file.fileno())
        self._checkpointed[stream] = (checkpoint.size, time.monotonic())

    # --- retention ------------------------------------------------------------------------

    async def apply_retention(self) -> RetentionReport:
        """Delete the predictions segments that retention allows now (by the journal's clock,
        which also stamps the record that attests it): exported, older than retention_days,
        closed, and covered by a signed checkpoint that the records kept reproduce from the new
        anchor. Appends the `retention.applied` admin record (durably) before deleting
        anything; also finishes a run that stopped between the two. Blocking work runs in
        worker threads; the event loop only awaits.

        Raises LedgerError, deleting nothing, when the records do not reproduce a signed
        checkpoint (damage: run `modelgate journal verify`); JournalError as the journal does.
        Cancelling it leaves at most a run that the next one finishes."""
        async with self._retention_lock:
            now_ns = self.journal.clock()
            plan = await asyncio.to_thread(self._plan_retention, now_ns)
            record = None
            if plan:
                days = self.journal.options.retention_days
                payload = retention_payload(
                    {**self._anchors, **{name: r.anchor for name, r in plan.items()}},
                    {name: r.segments for name, r in plan.items()},
                    days,
                    now_ns - days * NS_PER_DAY,
                )
                record = await self.journal.append(
                    ADMIN, RETENTION_APPLIED, RETENTION_ACTOR, payload
                )
                self._anchors.update(latest_anchors([record]))
            deleted = await asyncio.to_thread(self._retire)
            return RetentionReport(deleted, dict(self._anchors), record)

    async def run_retention(self, period_s: float = RETENTION_PERIOD_S) -> None:
        """Apply retention now and then every `period_s` until cancelled (the server's task).
        A failing run is logged and the next period tries again."""
        while True:
            try:
                report = await self.apply_retention()
            except Exception:  # a maintenance task must outlive one bad run; it is logged
                logger.exception("journal retention failed; retrying in %.0f s", period_s)
            else:
                for stream, paths in report.deleted.items():
                    logger.info(
                        "journal retention: %s: %d segments deleted, records up to seq %d",
                        stream,
                        len(paths),
                        report.anchors[stream].seq,
                    )
            await asyncio.sleep(period_s)

    def _plan_retention(self, now_ns: int) -> dict[str, _Retirement]:
        """Worker thread: what each retained stream may lose beyond its current anchor."""
        plan: dict[str, _Retirement] = {}
        for stream in RETAINED_STREAMS:
            anchor = self._anchors[stream]
            with self._checkpoints_lock:
                stored = read_checkpoints(self.root, stream, self.key)
            signed = max((s.checkpoint.size for s in stored), default=0)
            fresh = [
                segment
                for segment in self.journal.expired(stream, now_ns)
                if anchor.seq < segment.last_seq <= signed
            ]
            if not fresh:
                continue
            last = fresh[-1]
            frontier, checkpoint = self._frontier_at(stream, anchor, last.last_seq, stored)
            exported = self.journal.manifest(stream).exported_through
            new = Anchor(
                last.last_seq, last.last_hash, last.last_time_ns, frontier, exported, checkpoint
            )
            plan[stream] = _Retirement(new, tuple(fresh))
        return plan

    def _frontier_at(
        self, stream: str, anchor: Anchor, seq: int, stored: list[StoredCheckpoint]
    ) -> tuple[tuple[bytes, ...], int]:
        """Worker thread: the tree's frontier at size `seq`, and the size of the first signed
        checkpoint at or after it, whose root the frontier and the records after it reproduce.
        Reads from the nearest known tree before `seq` (a checkpoint or the anchor)."""
        target = min((s for s in stored if s.checkpoint.size >= seq), key=_size)
        start = max(
            (s for s in stored if anchor.seq <= s.checkpoint.size <= seq), key=_size, default=None
        )
        tree = anchor.tree() if start is None else _restore(stream, start)
        frontier = tuple(tree.state()[1]) if tree.size == seq else ()
        end = target.checkpoint.size
        for record in self.journal.read(stream, since_seq=tree.size + 1, until_seq=end):
            tree.append(merkle.leaf_hash(record.body))
            if tree.size == seq:
                frontier = tuple(tree.state()[1])
        if tree.size != end or tree.root() != target.checkpoint.root:
            raise LedgerError(
                f"{stream}: the records up to seq {end} do not reproduce the signed checkpoint of "
                "that size; retention deleted nothing (run `modelgate journal verify`)"
            )
        return frontier, end

    def _retire(self) -> dict[str, list[Path]]:
        """Worker thread: delete up to each stream's (attested) anchor."""
        deleted: dict[str, list[Path]] = {}
        for stream in RETAINED_STREAMS:
            paths = self.journal.retire(stream, self._anchors[stream].seq)
            if paths:
                deleted[stream] = paths
        return deleted

    def find_prediction(self, request_id: str) -> Record | None:
        """The prediction record of `request_id`, or None. Blocking: one record for the
        `RECENT_REQUESTS` most recent ids, a scan of the stream for older ones."""
        with self._lock:
            seq = self._by_request.get(request_id)
        if seq is not None:
            return next(self.journal.read(PREDICTIONS, since_seq=seq, until_seq=seq), None)
        return next(
            (
                r
                for r in self.journal.read(PREDICTIONS)
                if r.payload.get("request_id") == request_id
            ),
            None,
        )

    async def export_new(self, stream: str, until_ns: int | None = None) -> Export | None:
        """Export what this (running) journal has of `stream` past its export mark, up to
        `until_ns` when given, into its export folder (`[journal] export_dir`, default
        `<path>/exports`) and move the mark (`export_from`, in a worker thread); None, writing
        nothing, when nothing is new. One export at a time. Raises ValueError for an unknown
        stream (the journal's own check)."""
        async with self._export_lock:
            return await asyncio.to_thread(self._export_new, stream, until_ns)

    def _export_new(self, stream: str, until_ns: int | None) -> Export | None:
        since_seq = self.journal.manifest(stream).exported_through + 1
        if next(self.journal.read(stream, since_seq, until_ns=until_ns), None) is None:
            return None
        folder = Path(self._config.export_dir or self.root / EXPORTS)
        folder.mkdir(parents=True, exist_ok=True)
        return export_from(self.journal, stream, folder, None, until_ns, since_seq)

    def close(self) -> None:
        """Flush the journal, then checkpoint every stream that grew since its last one."""
        self.journal.close()
        for stream, tree in self._trees.items():
            if tree.size > self._checkpointed[stream][0]:
                self._checkpoint(stream)


def _request_id(payload: dict[str, Any]) -> str:
    """A prediction payload's request id; "" when it has none (not indexed)."""
    request_id = payload.get("request_id")
    return request_id if isinstance(request_id, str) else ""


def _request_ids(appended: Appended) -> list[str]:
    """The request ids of appended predictions: the keys their appender gave (no payload to
    decode), else their payloads'."""
    keys = appended.keys
    if all(keys):
        return keys
    bodies = appended.bodies
    return [
        key or _request_id(orjson.loads(body)["payload"])
        for key, body in zip(keys, bodies, strict=True)
    ]


def _options(config: JournalConfig) -> JournalOptions:
    return JournalOptions(
        fsync=config.fsync,
        fsync_interval_ms=config.fsync_interval_ms,
        segment_bytes=config.segment_bytes,
        queue_limit=config.queue_limit,
        when_full=config.when_full,
        async_window_ms=config.async_window_ms,
        durable_window_us=config.durable_window_us,
        retention_days=config.retention_days,
        accept_damage=config.accept_damage,
    )


# ---- offline checks (the CLI) -------------------------------------------------------------


def public_key(root: Path, config: JournalConfig) -> NoteKey:
    key = load_or_create_key(Path(config.signing_key or root / SIGNING_KEY_FILE))
    return NoteKey(config.key_name, key.public_key())


def _read_only(root: Path) -> Journal:
    """The journal opened for reading at rest: a torn tail is reported, not cut."""
    return Journal.open(root, JournalOptions(repair_torn_tail=False))


def _leaves(root: Path, stream: str) -> tuple[merkle.PrunedLeaves, list[Record], Anchor]:
    """The records kept of `stream`, their leaf hashes after its anchor's tree, and the anchor."""
    with _read_only(root) as journal:
        anchor = read_anchors(journal, ADMIN)[stream]
        records = list(records_after(journal, stream, anchor))
    leaves = merkle.PrunedLeaves(anchor.tree(), [merkle.leaf_hash(r.body) for r in records])
    return leaves, records, anchor


@dataclass(frozen=True)
class StreamCheck:
    """What `verify_ledger` found of one stream."""

    head: int  # the stream's last seq (its tree size)
    first: int  # the first seq read and matched against the tree
    checkpoints: int  # signed checkpoints whose root the records reproduce
    earlier: int  # signed checkpoints before the retention anchor: signatures checked only
    retention: Anchor  # the records before it were deleted by retention (seq 0: none were)

    @property
    def records(self) -> int:
        return self.head - self.first + 1


def verify_ledger(
    root: Path,
    key: NoteKey,
    streams: tuple[str, ...] = (ADMIN, PREDICTIONS),
    *,
    from_checkpoint: bool = False,
) -> dict[str, StreamCheck]:
    """Check segments, chains, retention, trees and checkpoint signatures. Returns what was
    checked per stream; raises JournalCorrupt or LedgerError at the first fault.

    After retention, a stream is checked from its anchor: the deletion must be attested by a
    retention.applied record whose claims hold (retention.py), the first record kept must link
    to the anchor, and every signed checkpoint at or after the anchor must match the tree
    restarted there; at least one must exist. `from_checkpoint` trusts each stream's latest
    signed checkpoint instead of recomputing the tree before it: its stored compact range must
    give the signed root, and the records after it are checked (hashes and chain, as they are
    read). The journal's files are still scanned when opened."""
    if not from_checkpoint:
        verify_journal(root, streams)
    with _read_only(root) as journal:
        anchors = read_anchors(journal, ADMIN)
        return {
            stream: _check_stream(journal, key, stream, anchors[stream], from_checkpoint)
            for stream in streams
        }


def _check_stream(
    journal: Journal, key: NoteKey, stream: str, anchor: Anchor, from_checkpoint: bool
) -> StreamCheck:
    stored = read_checkpoints(journal.root, stream, key)
    # (line number, checkpoint): those the records kept can be matched against
    covering = [(n, s) for n, s in enumerate(stored, start=1) if _size(s) >= anchor.seq]
    earlier = len(stored) - len(covering)
    if anchor.seq and not covering:
        raise LedgerError(
            f"{stream}: records up to seq {anchor.seq} were deleted by retention, but no signed "
            "checkpoint covers that seq: the tree kept cannot be checked"
        )
    head = journal.head(stream)[0]
    for number, item in covering:
        if _size(item) > head:
            raise LedgerError(
                f"{stream}: checkpoint {number} covers {_size(item)} records but the stream "
                f"holds {head}: records were removed from its end"
            )
    records: Iterable[Record]
    if from_checkpoint and covering:
        covering = [max(covering, key=lambda c: _size(c[1]))]
        tree = _restore(stream, covering[0][1])
        records = journal.read(stream, since_seq=tree.size + 1)
    else:
        tree = anchor.tree()
        records = records_after(journal, stream, anchor)
    first = tree.size + 1
    due = iter(sorted(covering, key=lambda c: _size(c[1])))
    pending = next(due, None)
    # None first: a checkpoint at the starting size is matched before any record is read
    for record in itertools.chain((None,), records):
        if record is not None:
            tree.append(merkle.leaf_hash(record.body))
        while pending is not None and _size(pending[1]) == tree.size:
            number, item = pending
            if tree.root() != item.checkpoint.root:
                raise LedgerError(
                    f"{stream}: checkpoint {number} (size {tree.size}) does not match the "
                    f"records: a record up to seq {tree.size} differs from what was signed"
                )
            pending = next(due, None)
    return StreamCheck(tree.size, first, len(covering), earlier, anchor)


def prove(root: Path, key: NoteKey, request_id: str) -> dict[str, Any]:
    """The prediction record of `request_id` with its inclusion proof against the latest signed
    checkpoint that covers it. Raises LedgerError when there is none."""
    leaves, records, anchor = _leaves(root, PREDICTIONS)
    record = next((r for r in records if r.payload.get("request_id") == request_id), None)
    if record is None:
        deleted = (
            f" (records up to seq {anchor.seq} were deleted by retention)" if anchor.seq else ""
        )
        raise LedgerError(f"no prediction record for request id {request_id!r}{deleted}")
    stored = read_checkpoints(root, PREDICTIONS, key)
    covering = [s for s in stored if s.checkpoint.size >= record.seq]
    if not covering:
        raise LedgerError(f"no signed checkpoint covers seq {record.seq} yet")
    latest = covering[-1]
    size = latest.checkpoint.size
    return {
        "record": record.body.decode(),
        "leaf_index": record.seq - 1,
        "tree_size": size,
        "proof": [h.hex() for h in merkle.inclusion_proof(record.seq - 1, size, leaves)],
        "checkpoint": latest.note,
        "verifier_key": key.verifier_key(),
    }


def verify_proof(document: dict[str, Any], key: NoteKey) -> Checkpoint:
    """Check a `prove` document offline against a trusted key. Raises CheckpointError,
    merkle.ProofError or LedgerError saying what does not hold."""
    try:
        body = document["record"].encode()
        index = document["leaf_index"]
        proof = [bytes.fromhex(h) for h in document["proof"]]
        note = document["checkpoint"]
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise LedgerError(f"not a proof document: {error}") from None
    checkpoint = verify_checkpoint(note, key)
    if document.get("tree_size") != checkpoint.size:
        raise LedgerError("the proof's tree size is not the checkpoint's")
    merkle.verify_inclusion(merkle.leaf_hash(body), index, checkpoint.size, proof, checkpoint.root)
    return checkpoint


def prove_consistency(
    root: Path, key: NoteKey, stream: str, old_size: int | None, new_size: int | None
) -> dict[str, Any]:
    """A consistency proof between two signed checkpoints of `stream` (by default the two
    latest): the later tree extends the earlier one, nothing before it was changed. Raises
    LedgerError when there is no signed checkpoint of a requested size."""
    stored = read_checkpoints(root, stream, key)
    by_size = {s.checkpoint.size: s for s in stored}
    if old_size is None or new_size is None:
        if len(stored) < 2:
            raise LedgerError(f"{stream}: fewer than two signed checkpoints")
        old_size = stored[-2].checkpoint.size if old_size is None else old_size
        new_size = stored[-1].checkpoint.size if new_size is None else new_size
    missing = [size for size in (old_size, new_size) if size not in by_size]
    if missing:
        raise LedgerError(f"{stream}: no signed checkpoint of size {missing[0]}")
    if old_size > new_size:
        raise LedgerError(f"the old size {old_size} is larger than the new size {new_size}")
    leaves, _, anchor = _leaves(root, stream)
    if old_size < anchor.seq:
        raise LedgerError(
            f"{stream}: the checkpoint of size {old_size} predates retention (records up to seq "
            f"{anchor.seq} were deleted): prove consistency from a later one"
        )
    proof = merkle.consistency_proof(old_size, new_size, leaves)
    return {
        "old_checkpoint": by_size[old_size].note,
        "new_checkpoint": by_size[new_size].note,
        "proof": [h.hex() for h in proof],
        "verifier_key": key.verifier_key(),
    }


def verify_consistency(document: dict[str, Any], key: NoteKey) -> tuple[Checkpoint, Checkpoint]:
    """Check a `prove_consistency` document offline: both checkpoints signed by `key`, of the
    same log, and the proof joining them. Raises CheckpointError, merkle.ProofError or
    LedgerError."""
    try:
        old_note, new_note = document["old_checkpoint"], document["new_checkpoint"]
        proof = [bytes.fromhex(h) for h in document["proof"]]
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise LedgerError(f"not a consistency document: {error}") from None
    old, new = verify_checkpoint(old_note, key), verify_checkpoint(new_note, key)
    if old.origin != new.origin:
        raise LedgerError(f"checkpoints of two logs: {old.origin!r} and {new.origin!r}")
    merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
    return old, new


def iter_records(
    root: Path, stream: str, since_ns: int | None = None, until_ns: int | None = None
) -> Iterator[Record]:
    """Read-only iteration for `journal show|tail` (records deleted by retention are gone)."""
    with _read_only(root) as journal:
        yield from journal.read(stream, since_ns=since_ns, until_ns=until_ns)


def record_document(record: Record) -> dict[str, object]:
    """A record as `journal show` and `journal export` write it (one JSON object a line)."""
    return {
        "stream": record.stream,
        "seq": record.seq,
        # floored to the microsecond, so that `--since` with this time includes the record
        "time": (EPOCH + timedelta(microseconds=record.time_ns // 1000)).isoformat(),
        "kind": record.kind,
        "actor": record.actor,
        "payload": record.payload,
        "prev": record.prev,
        "hash": record.hash,
    }


@dataclass(frozen=True)
class Export:
    """What `export_records` wrote, and the stream's export mark afterwards."""

    path: Path
    records: int
    first_seq: int  # 0 when no record was in the range
    last_seq: int
    exported_through: int  # every record up to this seq has been exported
    marked: bool  # this export advanced the mark


def export_records(
    root: Path,
    stream: str,
    out: Path,
    since_ns: int | None = None,
    until_ns: int | None = None,
) -> Export:
    """`export_from` the journal at `root`, which must be closed (the server stopped; while it
    runs, its admin API exports: `Ledger.export`)."""
    with _read_only(root) as journal:
        return export_from(journal, stream, out, since_ns, until_ns)


def export_from(
    journal: Journal,
    stream: str,
    out: Path,
    since_ns: int | None = None,
    until_ns: int | None = None,
    since_seq: int = 1,
) -> Export:
    """Write the committed records of `stream` from `since_seq` on with since_ns <= time_ns <
    until_ns (`record_document`, one a line) to the new file `out`, or into the folder `out` as
    `<stream>-<first seq>-<last seq>.jsonl`; durably (fsync, then a link that never replaces an
    existing file: FileExistsError). Then mark them exported in the stream's manifest, if they
    continue what was exported before (else a gap would count as exported and nothing is
    marked). A segment counts as exported once every record in it is: one that the time range
    covers only in part is not, and retention keeps it. Blocking."""
    folder = out if out.is_dir() else out.parent
    temporary = folder / f".{stream}-export-{os.getpid()}-{threading.get_ident()}.tmp"
    first = last = count = 0
    try:
        with temporary.open("wb") as file:
            for record in journal.read(stream, since_seq, since_ns=since_ns, until_ns=until_ns):
                file.write(orjson.dumps(record_document(record)) + b"\n")
                first, last, count = first or record.seq, record.seq, count + 1
            file.flush()
            os.fsync(file.fileno())
        path = out / f"{stream}-{first:020d}-{last:020d}.jsonl" if out.is_dir() else out
        os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(folder)
    mark = journal.manifest(stream).exported_through
    # contiguous with the mark (a gap would count as exported) and beyond it
    marked = count > 0 and first <= mark + 1 and last > mark
    if marked:
        journal.mark_exported(stream, last)
    return Export(path, count, first, last, journal.manifest(stream).exported_through, marked)


def time_ns(text: str) -> int:
    """Nanoseconds since the epoch of an ISO 8601 time (UTC when it names no zone), as
    `journal show|export --since/--until` and the admin API's export take them. ValueError
    when it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // timedelta(microseconds=1) * 1000
