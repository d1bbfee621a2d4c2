"""Retention in the ledger: what may be deleted, the record that attests it, and where each
stream's Merkle tree and hash chain restart afterwards.

Policy (the ledger applies it; the journal deletes). A stream's leading closed segments are
deleted once every record in them is exported (`modelgate journal export --out`), the newest of
them is older than `retention_days`, and a signed checkpoint covers their last record, so that
the tree over what remains can still be checked against a signature. Never the active segment.

The anchor of a stream is its last deleted record: seq, hash, time, and the tree's compact
range (frontier) at that size. The chain restarts there (the first record kept names the
anchor's hash as `prev`) and so does the tree (`CompactTree.from_state`). The frontier is
computed before deleting, from the records themselves, and is trusted only because, extended
with the records kept up to a signed checkpoint, it gives that checkpoint's root.

The attestation: before deleting anything, the ledger appends, durably, a `retention.applied`
record to the admin stream (actor `system:retention`) whose payload is::

    {"retention_days": 183, "cutoff_ns": <records older than this were eligible>,
     "streams": {"<stream>": {
         "through_seq": N, "through_hash": "<hex>", "through_time_ns": T,
         "exported_through": E,          # the stream's export mark when deleting (E >= N)
         "checkpoint": C,                # the signed checkpoint (C >= N) the frontier matched
         "frontier": ["<hex>", ...],     # the tree's compact range at size N
         "deleted": [{"segment": "<name>", "first_seq": a, "last_seq": b, "last_hash": "<hex>"}]
     }}}

It lists every stream that retention has ever touched, with its current anchor (`deleted` names
this run's segments only), so the latest such record alone says where every stream starts. It
is part of the admin stream's chain and tree, so the deletion is as tamper-evident as any
operation. A crash after the record and before the deletion leaves the segments in place: the
stream then starts at the anchor all the same (the records in between are read for the chain
only) and the next run deletes them.

Verification (`check_anchor`): a stream whose manifest says records were deleted must have a
`retention.applied` record attesting at least as much, and its claims must hold: the records
were exported, and older than its retention period when it was written. Anything else is
damage, not retention.

Threads: pure functions over records and manifests; the ledger decides which thread calls them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.governance import merkle
from gateway.governance.journal import Journal
from gateway.governance.records import GENESIS, JournalCorrupt, Record
from gateway.governance.segments import Manifest, Segment

RETENTION_APPLIED = "retention.applied"  # the admin record's kind
RETENTION_ACTOR = "system:retention"
NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class Anchor:
    """Where a stream starts after retention, and the record that attests it (seq 0: the
    stream still starts at its first record)."""

    seq: int = 0  # the last record deleted
    hash: str = GENESIS  # its hash: the `prev` of the first record kept
    time_ns: int = 0  # its time
    frontier: tuple[bytes, ...] = ()  # the tree's compact range at size `seq`
    exported_through: int = 0  # the export mark when it was deleted
    checkpoint: int = 0  # the signed checkpoint the frontier was matched against
    record_seq: int = 0  # the attesting retention.applied record (admin seq)
    record_time_ns: int = 0
    retention_days: int = 0  # the retention period that record applied

    def tree(self) -> merkle.CompactTree:
        """The tree at the anchor, to be extended with the records kept."""
        return merkle.CompactTree.from_state(self.seq, self.frontier)


NO_ANCHOR = Anchor()


def retention_payload(
    anchors: Mapping[str, Anchor],
    deleted: Mapping[str, Sequence[Segment]],
    retention_days: int,
    cutoff_ns: int,
) -> dict[str, Any]:
    """The `retention.applied` payload: every anchored stream, with this run's deletions."""
    return {
        "retention_days": retention_days,
        "cutoff_ns": cutoff_ns,
        "streams": {
            name: {
                "through_seq": anchor.seq,
                "through_hash": anchor.hash,
                "through_time_ns": anchor.time_ns,
                "exported_through": anchor.exported_through,
                "checkpoint": anchor.checkpoint,
                "frontier": [h.hex() for h in anchor.frontier],
                "deleted": [
                    {
                        "segment": s.path.name,
                        "first_seq": s.first_seq,
                        "last_seq": s.last_seq,
                        "last_hash": s.last_hash,
                    }
                    for s in deleted.get(name, ())
                ],
            }
            for name, anchor in anchors.items()
            if anchor.seq
        },
    }


def _anchors_of(record: Record) -> dict[str, Anchor]:
    """The anchors a retention.applied record attests. Raises JournalCorrupt naming it when its
    payload is not one."""
    try:
        days = record.payload["retention_days"]
        anchors = {
            name: Anchor(
                seq=entry["through_seq"],
                hash=entry["through_hash"],
                time_ns=entry["through_time_ns"],
                frontier=tuple(bytes.fromhex(h) for h in entry["frontier"]),
                exported_through=entry["exported_through"],
                checkpoint=entry["checkpoint"],
                record_seq=record.seq,
                record_time_ns=record.time_ns,
                retention_days=days,
            )
            for name, entry in record.payload["streams"].items()
        }
        for anchor in anchors.values():
            anchor.tree()  # the frontier has the shape of a tree of that size
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise JournalCorrupt(
            record.stream,
            None,
            None,
            record.seq,
            f"a malformed {RETENTION_APPLIED} record: {error}",
        ) from None
    return anchors


def latest_anchors(admin_records: Iterable[Record]) -> dict[str, Anchor]:
    """The anchors of the last retention.applied record among `admin_records` (none: {})."""
    latest: Record | None = None
    for record in admin_records:
        if record.kind == RETENTION_APPLIED:
            latest = record
    return _anchors_of(latest) if latest is not None else {}


def check_anchor(stream: str, anchor: Anchor, manifest: Manifest) -> None:
    """Raise JournalCorrupt unless what the manifest says was deleted is retention: attested by
    `anchor`'s record, exported, and old enough by that record's own retention period."""
    base = manifest.base_seq
    if base > anchor.seq:
        attested = f"; the last {RETENTION_APPLIED} record attests only up to seq {anchor.seq}"
        raise JournalCorrupt(
            stream,
            None,
            None,
            anchor.seq + 1,
            f"records {anchor.seq + 1}..{base} were deleted other than by retention"
            + (attested if anchor.seq else f" (no {RETENTION_APPLIED} record on the admin stream)"),
        )
    if not anchor.seq:
        return
    where = f"the {RETENTION_APPLIED} record at admin seq {anchor.record_seq}"
    if base == anchor.seq and manifest.base_hash != anchor.hash:
        raise JournalCorrupt(
            stream, None, None, base, f"the retention base's hash is not the one {where} attests"
        )
    if anchor.exported_through < anchor.seq:
        raise JournalCorrupt(
            stream,
            None,
            None,
            anchor.exported_through + 1,
            f"{where} deleted records up to seq {anchor.seq}, exported only through seq "
            f"{anchor.exported_through}",
        )
    if anchor.record_time_ns - anchor.time_ns < anchor.retention_days * NS_PER_DAY:
        raise JournalCorrupt(
            stream,
            None,
            None,
            anchor.seq,
            f"{where} deleted records younger than its retention period "
            f"of {anchor.retention_days} days",
        )


def read_anchors(journal: Journal, admin: str) -> dict[str, Anchor]:
    """Every stream's anchor, from the admin stream's latest retention.applied record, each
    checked against the stream's manifest (`check_anchor`). Blocking: reads the admin stream."""
    found = latest_anchors(journal.read(admin))
    anchors = {name: found.get(name, NO_ANCHOR) for name in journal.options.streams}
    for name, anchor in anchors.items():
        check_anchor(name, anchor, journal.manifest(name))
    return anchors


def records_after(journal: Journal, stream: str, anchor: Anchor) -> Iterator[Record]:
    """The records of `stream` after its anchor, in seq order; the first one must link to the
    anchor's hash (JournalCorrupt otherwise): the chain restarts where retention cut it."""
    expected = anchor.hash if anchor.seq else None
    for record in journal.read(stream, since_seq=anchor.seq + 1):
        if expected is not None and record.prev != expected:
            raise JournalCorrupt(
                stream,
                None,
                None,
                record.seq,
                f"broken chain: prev is not the hash of seq {anchor.seq} that the "
                f"{RETENTION_APPLIED} record at admin seq {anchor.record_seq} attests",
            )
        expected = None
        yield record
