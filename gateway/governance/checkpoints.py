"""Signed checkpoints of the journal's Merkle trees, as C2SP transparency-log checkpoints.

A checkpoint commits to one stream's tree at one size::

    <origin>                  e.g. "modelgate.journal/admin"
    <tree size>               decimal
    <root hash>               base64 of the 32-byte RFC 9162 root
                              (optional extension lines, none written here)

and is published as a C2SP signed note: that text, a blank line, then one line per signature,
``— <key name> base64(key ID || Ed25519 signature over the text)``, where
``key ID = SHA-256(key name || 0x0A || 0x01 || public key)[:4]``. Standard tooling for
transparency logs can therefore check our checkpoints, and ours can check theirs.

`verify_checkpoint` never crashes on bad input: it returns the checkpoint or raises
CheckpointError saying what is wrong (malformed note, no signature by the trusted key, a bad
signature).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_ED25519 = b"\x01"
_SIGNATURE_PREFIX = "\u2014 "  # em dash, space


class CheckpointError(Exception):
    """A checkpoint note is malformed or its signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


@dataclass(frozen=True)
class NoteKey:
    """A signer's name and public key; `key_id` is the C2SP signed-note key ID. Its text form
    (`verifier_key`, `parse`) is the usual ``<name>+<hex key ID>+<base64(0x01 || key)>``."""

    name: str
    public_key: Ed25519PublicKey

    @classmethod
    def parse(cls, verifier_key: str) -> NoteKey:
        """Raises CheckpointError for anything but a well-formed Ed25519 verifier key."""
        name, _, rest = verifier_key.partition("+")
        key_id, _, encoded = rest.partition("+")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise CheckpointError("the verifier key's key material is not base64") from None
        if not name or len(blob) != 33 or blob[:1] != _ED25519:
            raise CheckpointError(f"{verifier_key!r} is not an Ed25519 verifier key")
        key = cls(name, Ed25519PublicKey.from_public_bytes(blob[1:]))
        if key.key_id.hex() != key_id:
            raise CheckpointError(f"key ID {key_id!r} does not match the key ({key.key_id.hex()})")
        return key

    def verifier_key(self) -> str:
        encoded = base64.b64encode(_ED25519 + self._raw()).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def _raw(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def key_id(self) -> bytes:
        return hashlib.sha256(self.name.encode() + b"\n" + _ED25519 + self._raw()).digest()[:4]


def sign_checkpoint(checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note of `checkpoint`, signed as `name`."""
    return sign_note(checkpoint.text(), name, private_key)


def verify_checkpoint(note: str, key: NoteKey) -> Checkpoint:
    """Parse `note` and check that `key` signed it. Raises CheckpointError."""
    return _parse_text(open_note(note, key))


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """`text` (ending in a newline) as a C2SP signed note signed by `name`."""
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise ValueError(f"key name {name!r} must be non-empty, without spaces or '+'")
    if not text.endswith("\n"):
        raise ValueError("a note's text ends with a newline")
    key = NoteKey(name, private_key.public_key())
    signature = private_key.sign(text.encode())
    line = f"{_SIGNATURE_PREFIX}{name} {base64.b64encode(key.key_id + signature).decode()}\n"
    return f"{text}\n{line}"


def open_note(note: str, key: NoteKey) -> str:
    """The text of `note` once `key`'s signature on it verifies. Raises CheckpointError."""
    # the last blank line separates: the text may hold blank lines, signatures never do
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not text:
        raise CheckpointError("not a signed note: no blank line between text and signatures")
    text += "\n"
    verified = False
    for line in signatures.splitlines():
        if not line.startswith(_SIGNATURE_PREFIX):
            raise CheckpointError(f"malformed signature line {line!r}")
        name, _, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise CheckpointError(f"signature of {name!r} is not base64") from None
        if name != key.name or blob[:4] != key.key_id:
            continue  # another signer's; C2SP says to ignore unknown keys
        try:
            key.public_key.verify(blob[4:], text.encode())
        except InvalidSignature:
            raise CheckpointError(f"the signature by {key.name!r} does not verify") from None
        verified = True
    if not verified:
        raise CheckpointError(f"no signature by the trusted key {key.name!r}")
    return text


def _parse_text(text: str) -> Checkpoint:
    lines = text.split("\n")[:-1]
    if len(lines) < 3:
        raise CheckpointError("a checkpoint needs an origin, a size and a root hash")
    origin, size, root = lines[:3]
    if not size.isdigit() or (size != "0" and size.startswith("0")):
        raise CheckpointError(f"tree size {size!r} is not a decimal number")
    try:
        root_bytes = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise CheckpointError("the root hash is not base64") from None
    if len(root_bytes) != 32:
        raise CheckpointError(f"the root hash has {len(root_bytes)} bytes, not 32")
    return Checkpoint(origin, int(size), root_bytes)


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key in `path` (PKCS#8 PEM), created with mode 0600 if it does not exist."""
    if path.exists():
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return loaded
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    return key
