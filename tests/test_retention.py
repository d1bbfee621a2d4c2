"""Export marks and retention: what may be deleted, the record that attests it, and that the
ledger still opens, verifies and proves afterwards, while damage is still damage. Real files in
tmp folders; an injected clock ages the records (no sleeps)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli import main
from gateway.config import JournalConfig
from gateway.governance import merkle
from gateway.governance.checkpoints import NoteKey
from gateway.governance.ledger import (
    ADMIN,
    PREDICTIONS,
    Ledger,
    LedgerError,
    export_records,
    iter_records,
    prove,
    prove_consistency,
    read_checkpoints,
    verify_consistency,
    verify_ledger,
    verify_proof,
)
from gateway.governance.records import JournalCorrupt, Record
from gateway.governance.retention import (
    NS_PER_DAY,
    RETENTION_APPLIED,
    Anchor,
    check_anchor,
)
from gateway.governance.segments import Manifest, read_manifest, write_manifest

T0 = 1_700_000_000 * 10**9
HOUR_NS = 3600 * 10**9


class Clock:
    """Wall-clock nanoseconds that only the test moves."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def _config(root: Path, **changes: object) -> JournalConfig:
    # small segments (a few records each) and a checkpoint every 4 records
    base = JournalConfig(
        path=str(root),
        fsync="off",
        segment_bytes=600,
        checkpoint_every=4,
        checkpoint_interval_s=1e6,
    )
    return dataclasses.replace(base, **changes)


async def _predict(ledger: Ledger, clock: Clock, first: int, count: int) -> None:
    for i in range(first, first + count):
        clock.now += HOUR_NS
        payload = {"request_id": f"req-{i}", "model": "m", "version": "1"}
        await ledger.journal.append(PREDICTIONS, "prediction", "tester", payload)


def _segment_ends(root: Path) -> list[int]:
    """The last seq of each closed predictions segment (the next one's first seq, less one)."""
    firsts = sorted(int(p.stem) for p in (root / PREDICTIONS).glob("*.seg"))
    return [first - 1 for first in firsts[1:]]


def _records(root: Path, stream: str = PREDICTIONS) -> list[Record]:
    return list(iter_records(root, stream))


@dataclasses.dataclass
class Retained:
    """A ledger after one retention run, closed: 36 predictions, seq 1..`through` deleted."""

    root: Path
    key: NoteKey
    clock: Clock
    through: int
    leaves: list[bytes]  # every record's leaf hash, deleted ones included (the oracle)
    record: Record  # the retention.applied record


async def _retained(root: Path) -> Retained:
    clock = Clock()
    ledger = Ledger.open(_config(root), clock=clock)
    await _predict(ledger, clock, 0, 30)
    ledger.close()
    records = _records(root)
    # records 1..19: the segment holding seq 19 is covered only in part, so it stays
    done = export_records(root, PREDICTIONS, root.parent / "archive", until_ns=records[19].time_ns)
    assert (done.records, done.exported_through, done.marked) == (19, 19, True)
    through = max(end for end in _segment_ends(root) if end <= 19)
    assert through < 19  # the fixture needs a segment that straddles the mark

    clock.now += 200 * NS_PER_DAY
    ledger = Ledger.open(_config(root), clock=clock)
    report = await ledger.apply_retention()
    assert report.record is not None and report.record.kind == RETENTION_APPLIED
    assert report.anchors[PREDICTIONS].seq == through
    assert report.deleted[PREDICTIONS][0].name == f"{1:020d}.seg"
    assert min(int(p.stem) for p in (root / PREDICTIONS).glob("*.seg")) == through + 1
    await _predict(ledger, clock, 30, 6)  # the tree goes on from the anchor
    key = ledger.key
    ledger.close()
    leaves = [merkle.leaf_hash(r.body) for r in records]
    leaves += [merkle.leaf_hash(r.body) for r in _records(root)[-6:]]
    return Retained(root, key, clock, through, leaves, report.record)


@pytest.fixture
async def retained(tmp_path: Path) -> Retained:
    root = tmp_path / "journal"
    root.mkdir()
    (tmp_path / "archive").mkdir()
    return await _retained(root)


# --- the tree without its first leaves ---------------------------------------------------------


def test_pruned_leaves_make_the_same_proofs_as_all_leaves() -> None:
    leaves = [merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(34)]
    made = 0
    for size in range(1, len(leaves) + 1):
        for base in range(size + 1):
            tree = merkle.CompactTree()
            tree.extend(leaves[:base])
            pruned = merkle.PrunedLeaves(tree, leaves[base:size])
            for index in range(base, size):
                proof = merkle.inclusion_proof(index, size, pruned)
                assert proof == merkle.inclusion_proof(index, size, leaves[:size])
                made += 1
            for old in range(max(base, 1), size + 1):
                proof = merkle.consistency_proof(old, size, pruned)
                assert proof == merkle.consistency_proof(old, size, leaves[:size])
    assert made > 5000
    tree = merkle.CompactTree()
    tree.extend(leaves[:6])
    with pytest.raises(ValueError, match=r"leaves \[4, 5\) were pruned"):
        merkle.inclusion_proof(5, 8, merkle.PrunedLeaves(tree, leaves[6:8]))


# --- export marks -------------------------------------------------------------------------------


async def test_export_marks_only_what_continues_the_mark(tmp_path: Path) -> None:
    root, archive = tmp_path / "journal", tmp_path / "archive"
    archive.mkdir()
    clock = Clock()
    ledger = Ledger.open(_config(root), clock=clock)
    await _predict(ledger, clock, 0, 10)
    ledger.close()
    times = [r.time_ns for r in _records(root)]

    later = export_records(root, PREDICTIONS, archive, since_ns=times[5])  # seq 6..10: a gap
    assert (later.first_seq, later.last_seq, later.exported_through) == (6, 10, 0)
    assert not later.marked
    assert later.path == archive / f"{PREDICTIONS}-{6:020d}-{10:020d}.jsonl"
    lines = [json.loads(line) for line in later.path.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [6, 7, 8, 9, 10]
    assert lines[0]["payload"]["request_id"] == "req-5" and "hash" in lines[0]

    first = export_records(root, PREDICTIONS, archive / "first.jsonl", until_ns=times[4])
    assert (first.records, first.exported_through, first.marked) == (4, 4, True)
    assert read_manifest(PREDICTIONS, root / PREDICTIONS).exported_through == 4  # durable
    with pytest.raises(FileExistsError):  # an archive is never overwritten
        export_records(root, PREDICTIONS, archive / "first.jsonl")
    again = export_records(root, PREDICTIONS, archive / "again.jsonl", until_ns=times[2])
    assert (again.marked, again.exported_through) == (False, 4)  # the mark never goes back
    rest = export_records(root, PREDICTIONS, archive / "rest.jsonl", since_ns=times[2])
    assert (rest.first_seq, rest.marked, rest.exported_through) == (3, True, 10)
    assert not list(archive.glob(".*.tmp"))


# --- what retention may delete ------------------------------------------------------------------


async def test_retention_deletes_only_exported_old_checkpointed_closed_segments(
    tmp_path: Path,
) -> None:
    root = tmp_path / "journal"
    clock = Clock()
    config = _config(root, checkpoint_every=1000)
    ledger = Ledger.open(config, clock=clock)
    await _predict(ledger, clock, 0, 12)
    ledger.close()  # a checkpoint at 12
    ledger = Ledger.open(config, clock=clock)
    await _predict(ledger, clock, 12, 12)
    ledger.journal.close()  # 24 records, none signed after 12
    export_records(root, PREDICTIONS, tmp_path / "all.jsonl")
    ends = _segment_ends(root)

    ledger = Ledger.open(config, clock=clock)
    try:
        clock.now += 100 * NS_PER_DAY
        young = await ledger.apply_retention()
        assert young.deleted == {} and young.record is None
        clock.now += 100 * NS_PER_DAY
        old = await ledger.apply_retention()
        covered = max(end for end in ends if end <= 12)  # by the signed checkpoint at 12
        assert old.anchors[PREDICTIONS].seq == covered
        assert old.anchors[PREDICTIONS].checkpoint == 12
        assert old.anchors[ADMIN].seq == 0  # the admin stream is never retained
    finally:
        ledger.close()  # signs 24
    ledger = Ledger.open(config, clock=clock)
    try:
        report = await ledger.apply_retention()
        assert report.anchors[PREDICTIONS].seq == ends[-1]  # never the active segment
        assert report.anchors[PREDICTIONS].checkpoint == 24
        assert len(list((root / PREDICTIONS).glob("*.seg"))) == 1
    finally:
        ledger.close()
    assert verify_ledger(root, ledger.key)[PREDICTIONS].first == ends[-1] + 1


async def test_nothing_unexported_is_deleted(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger.open(_config(tmp_path), clock=clock)
    try:
        await _predict(ledger, clock, 0, 20)
        clock.now += 400 * NS_PER_DAY
        report = await ledger.apply_retention()
        assert report.deleted == {} and report.record is None
        assert ledger.journal.head(ADMIN)[0] == 0  # nothing to attest, nothing journaled
    finally:
        ledger.close()


# --- after retention ----------------------------------------------------------------------------


async def test_the_deletion_is_attested_on_the_admin_stream(retained: Retained) -> None:
    payload = retained.record.payload
    entry = payload["streams"][PREDICTIONS]
    assert payload["retention_days"] == 183 and ADMIN not in payload["streams"]
    assert (entry["through_seq"], entry["exported_through"]) == (retained.through, 19)
    assert entry["checkpoint"] >= retained.through
    assert entry["deleted"][0]["first_seq"] == 1
    assert entry["deleted"][-1]["last_seq"] == retained.through
    tree = merkle.CompactTree()
    tree.extend(retained.leaves[: retained.through])
    assert entry["frontier"] == [h.hex() for h in tree.state()[1]]
    kept = _records(retained.root)
    assert kept[0].seq == retained.through + 1 and kept[0].prev == entry["through_hash"]


async def test_restart_verify_and_prove_after_retention(retained: Retained) -> None:
    root, key, through = retained.root, retained.key, retained.through
    found = verify_ledger(root, key)
    assert (found[PREDICTIONS].first, found[PREDICTIONS].head) == (through + 1, 36)
    assert found[PREDICTIONS].retention.seq == through
    assert found[PREDICTIONS].retention.record_seq == retained.record.seq
    stored = read_checkpoints(root, PREDICTIONS, key)
    earlier = sum(s.checkpoint.size < through for s in stored)
    assert found[PREDICTIONS].earlier == earlier and earlier > 0  # signatures only
    # the tree kept signs what the whole tree would have
    assert stored[-1].checkpoint.root == merkle.root_from_leaf_hashes(retained.leaves)
    latest = verify_ledger(root, key, from_checkpoint=True)[PREDICTIONS]
    assert (latest.head, latest.checkpoints, latest.earlier) == (36, 1, earlier)

    ledger = Ledger.open(_config(root), clock=retained.clock)  # the server's start
    try:
        assert ledger.find_prediction("req-33").seq == 34
        assert ledger.find_prediction("req-1") is None
        await _predict(ledger, retained.clock, 36, 2)
    finally:
        ledger.close()
    assert verify_ledger(root, key)[PREDICTIONS].head == 38

    document = prove(root, key, f"req-{through}")  # the first record kept
    assert document["leaf_index"] == through
    assert verify_proof(document, key).size == 38
    with pytest.raises(LedgerError, match="deleted by retention"):
        prove(root, key, "req-1")
    sizes = [s.checkpoint.size for s in read_checkpoints(root, PREDICTIONS, key)]
    old = min(size for size in sizes if size >= through)
    consistency = prove_consistency(root, key, PREDICTIONS, old, 38)
    assert [c.size for c in verify_consistency(consistency, key)] == [old, 38]
    with pytest.raises(LedgerError, match="predates retention"):
        prove_consistency(root, key, PREDICTIONS, sizes[0], 38)


async def _interrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, Clock, NoteKey, Record]:
    """A run that died after its retention.applied record and before deleting anything."""
    clock = Clock()
    root = tmp_path / "journal"
    ledger = Ledger.open(_config(root), clock=clock)
    await _predict(ledger, clock, 0, 20)
    ledger.close()
    export_records(root, PREDICTIONS, tmp_path / "all.jsonl")
    clock.now += 200 * NS_PER_DAY
    ledger = Ledger.open(_config(root), clock=clock)

    def crash(stream: str, through_seq: int) -> list[Path]:
        raise OSError("the process died here")

    monkeypatch.setattr(ledger.journal, "retire", crash)
    with pytest.raises(OSError):
        await ledger.apply_retention()
    ledger.close()
    assert read_manifest(PREDICTIONS, root / PREDICTIONS).base_seq == 0  # nothing deleted
    (record,) = [r for r in _records(root, ADMIN) if r.kind == RETENTION_APPLIED]
    return root, clock, ledger.key, record


async def test_an_interrupted_run_is_finished_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, clock, key, _ = await _interrupted(tmp_path, monkeypatch)
    found = verify_ledger(root, key)[PREDICTIONS]  # attested, not yet done: fine
    through = found.retention.seq
    assert through > 0 and found.first == through + 1

    ledger = Ledger.open(_config(root), clock=clock)  # starts at the anchor all the same
    try:
        report = await ledger.apply_retention()
        assert report.record is None and report.anchors[PREDICTIONS].seq == through
        assert report.deleted[PREDICTIONS]  # finished without a second record
    finally:
        ledger.close()
    assert read_manifest(PREDICTIONS, root / PREDICTIONS).base_seq == through
    assert verify_ledger(root, key)[PREDICTIONS].first == through + 1


async def test_an_anchor_that_is_not_the_record_kept_breaks_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, clock, key, record = await _interrupted(tmp_path, monkeypatch)
    payload = orjson.loads(orjson.dumps(record.payload))
    payload["streams"][PREDICTIONS]["through_hash"] = "e" * 64
    ledger = Ledger.open(_config(root), clock=clock)
    await ledger.journal.append(ADMIN, RETENTION_APPLIED, "system:retention", payload)
    ledger.journal.close()
    with pytest.raises(JournalCorrupt, match="broken chain: prev is not the hash of seq"):
        verify_ledger(root, key)


async def test_the_server_task_survives_a_failing_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def failing() -> Any:
        nonlocal calls
        calls += 1
        raise LedgerError("a bad run")

    ledger = Ledger.open(_config(tmp_path))
    monkeypatch.setattr(ledger, "apply_retention", failing)
    task = asyncio.create_task(ledger.run_retention(period_s=0.001))
    for _ in range(1000):
        await asyncio.sleep(0.001)
        if calls >= 3:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ledger.close()
    assert calls >= 3


# --- damage is still damage ---------------------------------------------------------------------


def _first_kept(root: Path) -> Path:
    return min((root / PREDICTIONS).glob("*.seg"))


async def test_a_changed_record_after_retention_is_named(retained: Retained) -> None:
    segment = _first_kept(retained.root)
    data = bytearray(segment.read_bytes())
    at = data.index(f"req-{retained.through}".encode())  # the first record kept
    data[at + 4] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as caught:
        verify_ledger(retained.root, retained.key)
    assert caught.value.seq == retained.through + 1


async def test_a_kept_segment_deleted_by_hand_is_damage(retained: Retained) -> None:
    _first_kept(retained.root).unlink()
    with pytest.raises(JournalCorrupt, match="segments deleted other than by retention"):
        verify_ledger(retained.root, retained.key)


def _forge_retention(root: Path) -> int:
    """Delete the first segment kept, and write the manifest as retention would have: its last
    record as the base, exported through it. Returns that seq."""
    directory = root / PREDICTIONS
    doomed, kept = sorted(directory.glob("*.seg"))[:2]
    last = [r for r in _records(root) if r.seq < int(kept.stem)][-1]
    exported = max(last.seq, read_manifest(PREDICTIONS, directory).exported_through)
    write_manifest(directory, Manifest(last.seq, last.hash, last.time_ns, exported))
    doomed.unlink()
    return last.seq


async def test_an_unexported_segment_deleted_like_retention_is_damage(
    retained: Retained,
) -> None:
    # the next segment holds records never exported and not old enough; the manifest is forged
    deleted = _forge_retention(retained.root)
    with pytest.raises(JournalCorrupt) as caught:
        verify_ledger(retained.root, retained.key)
    assert f"records {retained.through + 1}..{deleted} were deleted other than by retention" in str(
        caught.value
    )
    assert f"attests only up to seq {retained.through}" in str(caught.value)
    with pytest.raises(JournalCorrupt, match="other than by retention"):  # the server's start
        Ledger.open(_config(retained.root))


async def test_a_deletion_without_any_retention_record_is_damage(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger.open(_config(tmp_path), clock=clock)
    await _predict(ledger, clock, 0, 12)
    ledger.close()
    _forge_retention(tmp_path)
    with pytest.raises(JournalCorrupt, match=r"no retention\.applied record on the admin stream"):
        verify_ledger(tmp_path, ledger.key)


async def test_a_wrong_anchor_does_not_match_the_signed_checkpoints(retained: Retained) -> None:
    # a retention.applied record (validly chained) whose frontier is not the tree's
    payload = orjson.loads(orjson.dumps(retained.record.payload))
    frontier = payload["streams"][PREDICTIONS]["frontier"]
    frontier[0] = "00" * 32
    ledger = Ledger.open(_config(retained.root), clock=retained.clock)
    await ledger.journal.append(ADMIN, RETENTION_APPLIED, "system:retention", payload)
    ledger.journal.close()
    with pytest.raises(LedgerError, match=r"checkpoint \d+ \(size \d+\) does not match"):
        verify_ledger(retained.root, retained.key)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"exported_through": 9}, "exported only through seq 9"),
        ({"record_time_ns": T0 + 100 * NS_PER_DAY}, "younger than its retention period"),
        ({"hash": "e" * 64}, "hash is not the one"),
    ],
)
def test_a_retention_record_whose_claims_do_not_hold_is_damage(
    change: dict[str, Any], reason: str
) -> None:
    anchor = Anchor(
        seq=12,
        hash="a" * 64,
        time_ns=T0,
        exported_through=12,
        checkpoint=12,
        record_seq=3,
        record_time_ns=T0 + 200 * NS_PER_DAY,
        retention_days=183,
    )
    manifest = Manifest(12, "a" * 64, T0, 12)
    check_anchor(PREDICTIONS, anchor, manifest)  # as retention writes it
    with pytest.raises(JournalCorrupt, match=reason):
        check_anchor(PREDICTIONS, dataclasses.replace(anchor, **change), manifest)


# --- the CLI ------------------------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`modelgate journal ...` in this process: exit status, stdout, stderr."""
    status = main(["journal", *args])
    out, err = capsys.readouterr()
    return status, out, err


async def test_cli_export_marks_and_verify_reports_retention(
    retained: Retained, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = ["--journal", str(retained.root)]
    out = retained.root.parent / "archive"
    status, exported, err = _cli(capsys, *journal, "export", "--out", str(out))
    assert status == 0, err
    assert f"(seq {retained.through + 1}..36)" in exported
    assert "exported through seq 36" in exported
    assert read_manifest(PREDICTIONS, retained.root / PREDICTIONS).exported_through == 36

    status, verified, err = _cli(capsys, *journal, "verify")
    assert status == 0, err
    lines = verified.splitlines()
    assert lines[0].startswith("admin: 1 records (seq 1..1)")
    assert lines[1].startswith(f"predictions: {36 - retained.through} records")
    attested = (
        f"seq 1..{retained.through} deleted by retention, attested by the retention.applied "
        f"record at admin seq {retained.record.seq}"
    )
    assert attested in lines[2]
    status, _, err = _cli(capsys, *journal, "export", "--out", str(out))  # the same file name
    assert status == 1 and "exists" in err

    _first_kept(retained.root).unlink()
    status, _, err = _cli(capsys, *journal, "verify")
    assert status == 1 and "other than by retention" in err
