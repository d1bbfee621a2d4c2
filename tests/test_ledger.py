"""The ledger: trees and signed checkpoints over the journal, offline verification, inclusion
proofs, and the CLI that drives them; each fault names what is wrong."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.config import JournalConfig
from gateway.governance import merkle
from gateway.governance.checkpoints import CheckpointError, NoteKey, sign_checkpoint
from gateway.governance.ledger import (
    PREDICTIONS,
    Ledger,
    LedgerError,
    prove,
    prove_consistency,
    read_checkpoints,
    verify_consistency,
    verify_ledger,
    verify_proof,
)
from gateway.governance.records import JournalCorrupt
from gateway.governance.segments import MAGIC

ROOT = Path(__file__).resolve().parent.parent


def _config(root: Path, **changes: object) -> JournalConfig:
    return dataclasses.replace(JournalConfig(path=str(root), checkpoint_every=4), **changes)


async def _filled(root: Path, count: int = 10, **changes: object) -> NoteKey:
    ledger = Ledger.open(_config(root, **changes))
    for i in range(count):
        payload = {"request_id": f"req-{i}", "model": "m", "version": "1"}
        await ledger.journal.append(PREDICTIONS, "prediction", "tester", payload, durable=True)
    key = ledger.key
    ledger.close()
    return key


async def test_checkpoints_are_signed_every_n_records_and_on_close(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 10)
    sizes = [s.checkpoint.size for s in read_checkpoints(tmp_path, PREDICTIONS, key)]
    # every 4 records (the writer may take several records per group), and the rest on close
    assert sizes[-1] == 10 and sizes == sorted(sizes) and len(sizes) >= 3
    found = verify_ledger(tmp_path, key)[PREDICTIONS]
    assert (found.records, found.first, found.checkpoints) == (10, 1, len(sizes))
    assert found.retention.seq == 0 and found.earlier == 0


async def test_reopening_rebuilds_the_tree_and_the_request_index(tmp_path: Path) -> None:
    await _filled(tmp_path, 6)
    ledger = Ledger.open(_config(tmp_path))
    try:
        found = ledger.find_prediction("req-4")
        assert found is not None and found.seq == 5 and found.payload["request_id"] == "req-4"
        assert ledger.find_prediction("req-404") is None
        # appended now: indexed by the key the appender gave, else by the payload's id
        await ledger.journal.append(PREDICTIONS, "prediction", "t", {"request_id": "new"})
        keyed = {"request_id": "keyed"}
        await ledger.journal.append(PREDICTIONS, "prediction", "t", keyed, key="keyed")
        assert [ledger._by_request.get(i) for i in ("req-4", "new", "keyed")] == [5, 7, 8]
    finally:
        ledger.close()
    assert verify_ledger(tmp_path, ledger.key)[PREDICTIONS].records == 8


async def test_a_proof_verifies_offline_and_every_forgery_is_named(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 9)
    document = prove(tmp_path, key, "req-3")
    assert document["leaf_index"] == 3 and document["tree_size"] == 9
    assert verify_proof(document, key).size == 9

    forged_record = {**document, "record": document["record"].replace("req-3", "req-4")}
    with pytest.raises(merkle.RootMismatchError):
        verify_proof(forged_record, key)
    other_size = {**document, "tree_size": 8}
    with pytest.raises(LedgerError, match="tree size"):
        verify_proof(other_size, key)
    other_key = NoteKey("modelgate.journal", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(CheckpointError, match="no signature"):
        verify_proof(document, other_key)
    with pytest.raises(LedgerError, match="not a proof"):
        verify_proof({"record": 1}, key)
    with pytest.raises(LedgerError, match="no prediction record"):
        prove(tmp_path, key, "req-99")


async def test_a_checkpoint_signed_with_another_key_fails_verification(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 5)
    intruder = Ed25519PrivateKey.generate()
    forged = sign_checkpoint(
        read_checkpoints(tmp_path, PREDICTIONS, key)[-1].checkpoint, key.name, intruder
    )
    with (tmp_path / "checkpoints" / f"{PREDICTIONS}.jsonl").open("ab") as file:
        file.write(orjson.dumps({"size": 5, "note": forged}) + b"\n")
    with pytest.raises(LedgerError, match=r"line .*no signature by the trusted key"):
        verify_ledger(tmp_path, key)


async def test_records_cut_off_at_a_frame_boundary_are_caught_by_the_checkpoint(
    tmp_path: Path,
) -> None:
    key = await _filled(tmp_path, 8)
    (segment,) = (tmp_path / PREDICTIONS).glob("*.seg")
    data = segment.read_bytes()
    segment.write_bytes(data[: data.rindex(MAGIC)])  # the last record, removed cleanly
    with pytest.raises(LedgerError, match="covers 8 records but the stream holds 7"):
        verify_ledger(tmp_path, key)


async def test_a_changed_record_is_named(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 8)
    (segment,) = (tmp_path / PREDICTIONS).glob("*.seg")
    data = bytearray(segment.read_bytes())
    at = data.index(b"req-2")
    data[at + 4] ^= 0x01  # req-2 -> req-3 inside a middle record
    segment.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as caught:
        verify_ledger(tmp_path, key)
    assert caught.value.seq == 3


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "journal", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


async def test_cli_verify_show_tail_prove_and_verify_proof(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 6)
    journal = ["--journal", str(tmp_path)]

    verified = _cli(*journal, "verify")
    assert verified.returncode == 0, verified.stderr
    assert "predictions: 6 records (seq 1..6)" in verified.stdout

    shown = [json.loads(line) for line in _cli(*journal, "show").stdout.splitlines()]
    assert [r["payload"]["request_id"] for r in shown] == [f"req-{i}" for i in range(6)]
    assert all(r["prev"] == p["hash"] for p, r in itertools.pairwise(shown))
    later = _cli(*journal, "show", "--since", shown[3]["time"]).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in later] == [4, 5, 6]
    tail = _cli(*journal, "tail", "-n", "2").stdout.splitlines()
    assert [json.loads(line)["seq"] for line in tail] == [5, 6]
    assert _cli(*journal, "tail", "-n", "0").stdout == ""
    negative = _cli(*journal, "tail", "-n", "-1")
    assert negative.returncode == 2 and "-1 is negative" in negative.stderr
    word = _cli(*journal, "tail", "-n", "x")
    assert word.returncode == 2 and "'x' is not an integer" in word.stderr

    proof = _cli(*journal, "prove", "req-2")
    assert proof.returncode == 0, proof.stderr
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(proof.stdout)
    trusted = ["--key", key.verifier_key()]
    checked = _cli(*trusted, "verify-proof", str(proof_file))
    assert (
        checked.returncode == 0 and "record 3 is in modelgate.journal/predictions" in checked.stdout
    )
    untrusted = _cli("verify-proof", str(proof_file))
    assert untrusted.returncode == 1 and "pass --key" in untrusted.stderr
    proof_file.write_text(proof.stdout.replace("req-2", "req-5"))
    forged = _cli(*trusted, "verify-proof", str(proof_file))
    assert forged.returncode == 1 and "root mismatch" in forged.stderr
    assert "Traceback" not in forged.stderr

    (segment,) = (tmp_path / PREDICTIONS).glob("*.seg")
    data = segment.read_bytes()
    segment.write_bytes(data[: data.rindex(MAGIC)])
    broken = _cli(*journal, "verify")
    assert broken.returncode == 1 and "records were removed from its end" in broken.stderr


async def test_verification_from_the_latest_checkpoint(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 9)
    ledger = Ledger.open(_config(tmp_path, checkpoint_every=1000))
    for i in range(3):  # after the last checkpoint, none of their own until close
        await ledger.journal.append(PREDICTIONS, "prediction", "t", {"request_id": f"late-{i}"})
    ledger.journal.close()  # flushed, but no closing checkpoint: records past the last one
    found = verify_ledger(tmp_path, key, (PREDICTIONS,), from_checkpoint=True)[PREDICTIONS]
    assert (found.head, found.first, found.checkpoints) == (12, 10, 1)

    path = tmp_path / "checkpoints" / f"{PREDICTIONS}.jsonl"
    lines = path.read_bytes().splitlines()
    last = orjson.loads(lines[-1])
    last["frontier"][0] = "00" * 32
    path.write_bytes(b"\n".join([*lines[:-1], orjson.dumps(last)]) + b"\n")
    with pytest.raises(LedgerError, match="compact range is not the signed root"):
        verify_ledger(tmp_path, key, (PREDICTIONS,), from_checkpoint=True)


async def test_from_checkpoint_still_sees_records_removed_from_the_end(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 8)
    (segment,) = (tmp_path / PREDICTIONS).glob("*.seg")
    data = segment.read_bytes()
    segment.write_bytes(data[: data.rindex(MAGIC)])
    with pytest.raises(LedgerError, match="covers 8 records but the stream holds 7"):
        verify_ledger(tmp_path, key, (PREDICTIONS,), from_checkpoint=True)


async def test_old_request_ids_are_found_by_a_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.governance.ledger.RECENT_REQUESTS", 2)
    await _filled(tmp_path, 5)
    ledger = Ledger.open(_config(tmp_path))
    try:
        assert len(ledger._by_request) == 2  # only the most recent ids stay in memory
        oldest = ledger.find_prediction("req-0")
        assert oldest is not None and oldest.seq == 1
        assert ledger.find_prediction("req-4").seq == 5
        assert ledger.find_prediction("req-9") is None
    finally:
        ledger.close()


async def test_consistency_between_two_signed_checkpoints(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 10)  # checkpoints every 4 records and at close
    sizes = [s.checkpoint.size for s in read_checkpoints(tmp_path, PREDICTIONS, key)]
    document = prove_consistency(tmp_path, key, PREDICTIONS, None, None)
    old, new = verify_consistency(document, key)
    assert (old.size, new.size) == (sizes[-2], sizes[-1])
    first = prove_consistency(tmp_path, key, PREDICTIONS, sizes[0], sizes[-1])
    assert verify_consistency(first, key)[0].size == sizes[0]

    flipped = bytearray(bytes.fromhex(first["proof"][0]))
    flipped[0] ^= 1
    forged = {**first, "proof": [flipped.hex(), *first["proof"][1:]]}
    with pytest.raises(merkle.RootMismatchError):
        verify_consistency(forged, key)
    swapped = {**first, "old_checkpoint": first["new_checkpoint"]}
    with pytest.raises(merkle.ProofError):
        verify_consistency(swapped, key)
    with pytest.raises(LedgerError, match="no signed checkpoint of size 3"):
        prove_consistency(tmp_path, key, PREDICTIONS, 3, sizes[-1])
    other_key = NoteKey("modelgate.journal", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(CheckpointError):
        verify_consistency(document, other_key)


async def test_cli_prove_consistency_and_verify_it(tmp_path: Path) -> None:
    key = await _filled(tmp_path, 10)
    proof = _cli("--journal", str(tmp_path), "prove-consistency")
    assert proof.returncode == 0, proof.stderr
    path = tmp_path / "consistency.json"
    path.write_text(proof.stdout)
    checked = _cli("--key", key.verifier_key(), "verify-proof", str(path))
    assert checked.returncode == 0 and "extends size" in checked.stdout
