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

Threads: the trees and the checkpoint files belong to the journal's writer thread once the
ledger is open (`_on_append`); `_lock` guards what the event loop or the CLI read of them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
from gateway.governance.journal import Journal, JournalOptions, verify_journal
from gateway.governance.records import Record

PREDICTIONS = "predictions"
ADMIN = "admin"
CHECKPOINTS_DIR = "checkpoints"
SIGNING_KEY_FILE = "signing-key.pem"
ORIGIN_PREFIX = "modelgate.journal/"
# request ids kept in memory for trace lookups (the most recent; older ones are found by a scan)
RECENT_REQUESTS = 200_000


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


class Ledger:
    def __init__(self, root: Path, config: JournalConfig) -> None:
        self.root = root
        self._config = config
        self._private_key = load_or_create_key(Path(config.signing_key or root / SIGNING_KEY_FILE))
        self.key = NoteKey(config.key_name, self._private_key.public_key())
        self._lock = threading.Lock()
        self._trees: dict[str, merkle.CompactTree] = {}
        self._checkpointed: dict[str, tuple[int, float]] = {}  # stream -> (size, monotonic time)
        self._by_request: dict[str, int] = {}  # request id -> seq in the predictions stream
        self.journal: Journal = Journal.open(root, _options(config), on_append=self._on_append)
        for stream in self.journal.options.streams:
            self._rebuild(stream)

    @classmethod
    def open(cls, config: JournalConfig) -> Ledger:
        """Blocking (reads every record to rebuild the trees): call it in a worker thread."""
        return cls(Path(config.path), config)

    def _rebuild(self, stream: str) -> None:
        tree = merkle.CompactTree()
        for record in self.journal.read(stream):
            tree.append(merkle.leaf_hash(record.body))
            self._index(record)
        self._trees[stream] = tree
        stored = read_checkpoints(self.root, stream, self.key)
        last = stored[-1].checkpoint.size if stored else 0
        self._checkpointed[stream] = (last, time.monotonic())

    def _index(self, record: Record) -> None:
        if record.stream == PREDICTIONS:
            request_id = record.payload.get("request_id")
            if isinstance(request_id, str):
                self._by_request[request_id] = record.seq
                if len(self._by_request) > RECENT_REQUESTS:
                    # dicts keep insertion order: the first key is the oldest
                    del self._by_request[next(iter(self._by_request))]

    def _on_append(self, stream: str, records: list[Record]) -> None:
        """Writer thread, after the group is synced."""
        with self._lock:
            tree = self._trees[stream]
            for record in records:
                tree.append(merkle.leaf_hash(record.body))
                self._index(record)
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
        with path.open("ab") as file:
            file.write(orjson.dumps(line) + b"\n")
            file.flush()
            os.fsync(file.fileno())
        self._checkpointed[stream] = (checkpoint.size, time.monotonic())

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

    def close(self) -> None:
        """Flush the journal, then checkpoint every stream that grew since its last one."""
        self.journal.close()
        for stream, tree in self._trees.items():
            if tree.size > self._checkpointed[stream][0]:
                self._checkpoint(stream)


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


def _leaf_hashes(root: Path, stream: str) -> tuple[list[bytes], list[Record]]:
    with Journal.open(root, JournalOptions(repair_torn_tail=False)) as journal:
        records = list(journal.read(stream))
    return [merkle.leaf_hash(r.body) for r in records], records


def verify_ledger(
    root: Path,
    key: NoteKey,
    streams: tuple[str, ...] = (ADMIN, PREDICTIONS),
    *,
    from_checkpoint: bool = False,
) -> dict[str, Any]:
    """Check segments, chains, trees and checkpoint signatures. Returns per stream the record
    count and the checkpoints checked; raises JournalCorrupt or LedgerError at the first fault.

    `from_checkpoint` trusts each stream's latest signed checkpoint instead of recomputing the
    tree before it: its stored compact range must give the signed root, and the records after
    it are checked (hashes and chain, as they are read). The journal's files are still scanned
    when opened."""
    if from_checkpoint:
        return {stream: _verify_since_checkpoint(root, key, stream) for stream in streams}
    verify_journal(root, streams)
    report: dict[str, Any] = {}
    for stream in streams:
        leaves, _ = _leaf_hashes(root, stream)
        stored = read_checkpoints(root, stream, key)
        for number, item in enumerate(stored, start=1):
            size = item.checkpoint.size
            if size > len(leaves):
                raise LedgerError(
                    f"{stream}: checkpoint {number} covers {size} records but the stream holds "
                    f"{len(leaves)}: records were removed from its end"
                )
            if merkle.root_from_leaf_hashes(leaves[:size]) != item.checkpoint.root:
                raise LedgerError(
                    f"{stream}: checkpoint {number} (size {size}) does not match the records: "
                    f"a record up to seq {size} differs from what was signed"
                )
        report[stream] = {"records": len(leaves), "checkpoints": len(stored)}
    return report


def _verify_since_checkpoint(root: Path, key: NoteKey, stream: str) -> dict[str, Any]:
    stored = read_checkpoints(root, stream, key)
    if not stored:
        return verify_ledger(root, key, (stream,))[stream]
    latest = stored[-1]
    size = latest.checkpoint.size
    try:
        tree = merkle.CompactTree.from_state(size, latest.frontier)
    except ValueError as error:
        raise LedgerError(f"{stream}: the latest checkpoint's compact range: {error}") from None
    if tree.root() != latest.checkpoint.root:
        raise LedgerError(f"{stream}: the latest checkpoint's compact range is not the signed root")
    with Journal.open(root, JournalOptions(repair_torn_tail=False)) as journal:
        head = journal.head(stream)[0]
        if head < size:
            raise LedgerError(
                f"{stream}: checkpoint covers {size} records but the stream holds {head}: "
                "records were removed from its end"
            )
        tree.extend(merkle.leaf_hash(r.body) for r in journal.read(stream, since_seq=size + 1))
    return {"records": tree.size, "checkpoints": 1, "from": size}


def prove(root: Path, key: NoteKey, request_id: str) -> dict[str, Any]:
    """The prediction record of `request_id` with its inclusion proof against the latest signed
    checkpoint that covers it. Raises LedgerError when there is none."""
    leaves, records = _leaf_hashes(root, PREDICTIONS)
    record = next((r for r in records if r.payload.get("request_id") == request_id), None)
    if record is None:
        raise LedgerError(f"no prediction record for request id {request_id!r}")
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
        "proof": [h.hex() for h in merkle.inclusion_proof(record.seq - 1, size, leaves[:size])],
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
    leaves, _ = _leaf_hashes(root, stream)
    proof = merkle.consistency_proof(old_size, new_size, leaves[:new_size])
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
    """Read-only iteration for `journal show|tail|export`."""
    with Journal.open(root, JournalOptions(repair_torn_tail=False)) as journal:
        yield from journal.read(stream, since_ns=since_ns, until_ns=until_ns)
