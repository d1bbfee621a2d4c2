"""Signed checkpoints: the C2SP signed-note format, checked against the reference vector of
golang.org/x/mod/sumdb/note (its example key and note), and every way a note can be wrong."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.governance.checkpoints import (
    Checkpoint,
    CheckpointError,
    NoteKey,
    load_or_create_key,
    open_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)

# golang.org/x/mod/sumdb/note: the documented example signer, verifier key and signed note.
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def _go_private_key() -> Ed25519PrivateKey:
    encoded = GO_SIGNER.split("+", 4)[4]  # the key material itself contains a '+'
    blob = base64.b64decode(encoded)
    assert blob[0] == 1  # Ed25519
    return Ed25519PrivateKey.from_private_bytes(blob[1:])


def test_signing_reproduces_the_reference_note_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, "PeterNeumann", _go_private_key()) == GO_NOTE


def test_verifier_key_round_trip_and_key_id() -> None:
    key = NoteKey.parse(GO_VERIFIER)
    assert key.key_id.hex() == "c74f20a3"
    assert key.verifier_key() == GO_VERIFIER
    assert NoteKey("PeterNeumann", _go_private_key().public_key()).verifier_key() == GO_VERIFIER


def test_opening_the_reference_note() -> None:
    assert open_note(GO_NOTE, NoteKey.parse(GO_VERIFIER)) == GO_TEXT


@pytest.mark.parametrize(
    ("note", "error"),
    [
        (GO_NOTE.replace("cryptography", "cryptographY"), "does not verify"),
        (GO_NOTE.replace("JnAM=", "JnAA="), "does not verify"),  # the signature, not the ID
        (GO_NOTE.replace("PeterNeumann x08", "PeterNeumannX x08"), "no signature by"),
        (GO_TEXT, "not a signed note"),
        (GO_NOTE.replace("\u2014 ", "- "), "malformed signature line"),
        (GO_NOTE.replace("x08go/", "x08go/!"), "not base64"),
    ],
)
def test_a_wrong_note_names_its_fault(note: str, error: str) -> None:
    with pytest.raises(CheckpointError, match=error):
        open_note(note, NoteKey.parse(GO_VERIFIER))


@pytest.mark.parametrize(
    "verifier",
    [
        GO_VERIFIER.replace("c74f20a3", "c74f20a4"),  # key ID of another key
        GO_VERIFIER[:-4],  # truncated key material
        "PeterNeumann+c74f20a3+A" + GO_VERIFIER.split("+")[2][1:].replace("R", "S", 1),
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys_are_refused(verifier: str) -> None:
    with pytest.raises(CheckpointError):
        NoteKey.parse(verifier)


def test_checkpoint_round_trip_and_other_signers_are_ignored() -> None:
    ours, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    checkpoint = Checkpoint("modelgate.journal/admin", 1234, bytes(range(32)))
    note = sign_checkpoint(checkpoint, "modelgate.example/journal", ours)
    assert note.startswith(
        "modelgate.journal/admin\n1234\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n"
    )
    key = NoteKey("modelgate.example/journal", ours.public_key())
    assert verify_checkpoint(note, key) == checkpoint
    # a cosignature by an unknown key is ignored, as C2SP requires
    cosigned = note + sign_note(checkpoint.text(), "witness.example", theirs).rpartition("\n\n")[2]
    assert verify_checkpoint(cosigned, key) == checkpoint
    # the same name with another key: not ours, so no signature by the trusted key
    forged = sign_checkpoint(checkpoint, "modelgate.example/journal", theirs)
    with pytest.raises(CheckpointError, match="no signature by"):
        verify_checkpoint(forged, key)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("origin\n12\n", "needs an origin"),
        ("origin\nx12\nAAAA\n", "not a decimal"),
        ("origin\n012\nAAAA\n", "not a decimal"),
        ("origin\n12\nAAAA\n", "3 bytes, not 32"),
        ("origin\n12\n!!!!\n", "not base64"),
    ],
)
def test_malformed_checkpoint_texts(text: str, error: str) -> None:
    key = Ed25519PrivateKey.generate()
    note = sign_note(text, "k", key)
    with pytest.raises(CheckpointError, match=error):
        verify_checkpoint(note, NoteKey("k", key.public_key()))


def test_signing_key_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "journal.pem"
    created = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    reloaded = load_or_create_key(path)
    message = b"same key"
    created.public_key().verify(reloaded.sign(message), message)
