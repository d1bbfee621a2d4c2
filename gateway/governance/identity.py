"""Identities: API tokens kept in a file, credential parsing, and the `Authenticator` facade.

Tokens. A token's secret is ``mg_`` followed by 32 random bytes in URL-safe base64 (43
characters). It is shown once, when created, and never stored: the store keeps its SHA-256 (hex)
next to a short public id, a name, a role, scopes, and the times it was created and revoked.
`authenticate(secret)` turns a secret into a `Principal` or raises `Unauthenticated`; the
message says what was wrong (missing, malformed, unknown, revoked) and never repeats the secret.

The file (`TokenStore(path)`) is JSON, ``{"version": 1, "tokens": [...]}``, mode 0600, replaced
atomically on every change: written to a temporary file in the same folder, fsynced, renamed
over the old one, and the folder fsynced. Readers therefore see the old file or the new one,
never a mix.

Changes from another process. The CLI (`modelgate token create | list | revoke`) and a running
server share the file. Every change takes an exclusive `flock` on ``<path>.lock``, re-reads the
file, applies itself and writes the file back, so no process loses another's change. A running
store checks the file (one `stat`) at most every `reload_interval_s` (default 1 s), from
`authenticate`, and reloads it when its identity (inode, size, mtime) changed: a revocation made
by the CLI takes effect in a running server within a second. A file that has become unreadable
or invalid is logged and the last good state kept; a file that was deleted means no tokens
(fail closed).

First start. `TokenStore.bootstrap()` (or `bootstrap(path)`) creates, when the store file does
not exist yet, an admin token, writes its secret to ``<folder>/admin-token`` (mode 0600, created
exclusively: an existing file is never overwritten) and returns it so the server can print it
once; later starts return None.

Journaling. The store does file I/O only; its callers journal. `create` and `revoke` return
a `TokenInfo` whose `to_dict()` is the payload of a `TOKEN_CREATED` / `TOKEN_REVOKED` record on
the admin stream (no secret, no hash). For example, in the admin API::

    info, secret = await asyncio.to_thread(store.create, "ci", Role.PREDICTOR, ["fraud"])
    await journal.append(ADMIN, TOKEN_CREATED, principal.actor, info.to_dict())

Credentials. `parse_authorization` reads an HTTP ``Authorization`` header or a gRPC
``authorization`` metadata value: ``Bearer <token>`` or, when a second source (LDAP) is
configured, ``Basic <base64(user:password)>``; scheme names are case-insensitive.
`Authenticator` combines the token store with that optional source and with the anonymous
principal used when inference auth is off.

Threads. `_snapshot` (the tokens as last read) is replaced whole and read without a lock, so
`authenticate` takes no lock on its fast path; `_mutex` serializes changes and reloads within
the process, the file lock across processes. `authenticate` may `stat` the file (at most once a
`reload_interval_s`) and, rarely, read it: cheap enough for the event loop. `create`, `revoke`
and `bootstrap` fsync: from the event loop, run them in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from gateway.config import ConfigError
from gateway.errors import ErrorKind, GatewayError, InvalidInput
from gateway.governance.rbac import ANONYMOUS, Principal, Role
from gateway.governance.segments import fsync_dir

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "mg_"
TOKEN_CHARS = len(TOKEN_PREFIX) + 43  # token_urlsafe(32): 32 bytes -> 43 base64url characters
_TOKEN = re.compile(r"mg_[A-Za-z0-9_-]{43}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,31}")  # RFC 9110 token, bounded
_MAX_NAME = 128
_MAX_SCOPE = 256
MAX_CREDENTIALS_CHARS = 8192  # longer Authorization values are malformed, not parsed

ADMIN_TOKEN_FILE = "admin-token"
FORMAT_VERSION = 1
TOKEN_CREATED = "token.created"  # journal kinds (admin stream) of the store's changes
TOKEN_REVOKED = "token.revoked"
REALM = "modelgate"

UnauthenticatedReason = Literal["missing", "scheme", "malformed", "unknown", "revoked", "rejected"]


class Unauthenticated(GatewayError):
    """No credentials, or credentials that identify nobody (401 / UNAUTHENTICATED).

    `reason`: "missing" (none sent), "scheme" (an unsupported scheme), "malformed", "unknown"
    (no such token), "revoked", "rejected" (the second source refused user and password).
    The message never contains the credentials.
    """

    kind = ErrorKind.UNAUTHENTICATED

    def __init__(self, reason: UnauthenticatedReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TokenNotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND

    def __init__(self, token_id: str) -> None:
        super().__init__(f"no token with id '{token_id}'")
        self.token_id = token_id


class TokenStoreError(ConfigError):
    """The token file cannot be read or is invalid, or first-start set-up cannot proceed; the
    message names the file."""


# ---- the tokens --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What is known about a token, its secret excepted. Times are ISO 8601, UTC, seconds."""

    id: str  # public: safe to show, log and journal
    name: str
    role: Role
    scopes: frozenset[str] = field(default_factory=frozenset)
    created_at: str = ""
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the payload of TOKEN_CREATED / TOKEN_REVOKED records and of listings."""
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role.label,
            "scopes": sorted(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }

    def principal(self) -> Principal:
        return Principal(self.name, self.role, self.scopes, kind="token", token_id=self.id)


@dataclass(frozen=True, slots=True)
class _Entry:
    info: TokenInfo
    sha256: str  # hex digest of the secret
    principal: Principal  # built once, handed out on every successful authenticate


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The tokens as of one read of the file; replaced whole, never changed."""

    entries: tuple[_Entry, ...]
    by_hash: dict[str, _Entry]
    by_id: dict[str, _Entry]
    signature: tuple[int, ...] | None  # the file's identity when read; None: no file

    @classmethod
    def of(cls, entries: Iterable[_Entry], signature: tuple[int, ...] | None) -> _Snapshot:
        items = tuple(entries)
        return cls(
            items,
            {e.sha256: e for e in items},
            {e.info.id: e for e in items},
            signature,
        )


_EMPTY = _Snapshot.of((), None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _digest(secret: str) -> str:
    return sha256(secret.encode("ascii")).hexdigest()


def _signature(st: os.stat_result) -> tuple[int, ...]:
    # The inode changes with every atomic replace; size and mtime catch an edit in place.
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _entry(info: TokenInfo, digest: str) -> _Entry:
    return _Entry(info, digest, info.principal())


def check_token_name(name: object) -> str:
    """A token's name: 1 to 128 printable characters (surrounding blanks removed)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a token needs a name")
    name = name.strip()
    if len(name) > _MAX_NAME or not name.isprintable():
        raise InvalidInput(f"a token name is at most {_MAX_NAME} printable characters")
    return name


def check_scopes(scopes: Iterable[str] | None) -> frozenset[str]:
    """Deployment names: each non-empty, at most 256 characters, without blanks or commas."""
    if scopes is None:
        return frozenset()
    if isinstance(scopes, str | bytes):
        # a bare string would become a set of its characters
        raise InvalidInput("scopes must be a list of deployment names, not one string")
    checked = set()
    for scope in scopes:
        if (
            not isinstance(scope, str)
            or not scope
            or len(scope) > _MAX_SCOPE
            or not scope.isprintable()
            or any(c.isspace() or c == "," for c in scope)
        ):
            raise InvalidInput(
                f"scope {scope!r} is not a deployment name (1 to {_MAX_SCOPE} printable "
                "characters, no blanks or commas)"
            )
        checked.add(scope)
    return frozenset(checked)


def _parse_file(path: Path, data: bytes) -> list[_Entry]:
    def bad(what: str) -> TokenStoreError:
        return TokenStoreError(f"token file {path}: {what}")

    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise bad(f"not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise bad(f"expected an object with version {FORMAT_VERSION}")
    tokens = document.get("tokens")
    if not isinstance(tokens, list):
        raise bad("'tokens' must be a list")
    entries: list[_Entry] = []
    ids: set[str] = set()
    hashes: set[str] = set()
    for number, item in enumerate(tokens, start=1):
        try:
            if not isinstance(item, dict):
                raise ValueError("not an object")
            token_id, digest = item["id"], item["sha256"]
            created, revoked = item["created_at"], item.get("revoked_at")
            if not isinstance(token_id, str) or not token_id:
                raise ValueError("bad id")
            if not isinstance(digest, str) or not _SHA256_HEX.fullmatch(digest):
                raise ValueError("sha256 must be 64 lowercase hex digits")
            if not isinstance(created, str) or not (revoked is None or isinstance(revoked, str)):
                raise ValueError("bad created_at or revoked_at")
            if token_id in ids or digest in hashes:
                raise ValueError("duplicate id or hash")
            info = TokenInfo(
                id=token_id,
                name=check_token_name(item["name"]),
                role=Role.parse(item["role"]),
                scopes=check_scopes(item.get("scopes", [])),
                created_at=created,
                revoked_at=revoked,
            )
        except (KeyError, ValueError, GatewayError) as error:
            detail = error.message if isinstance(error, GatewayError) else str(error)
            raise bad(f"token {number}: {detail}") from None
        ids.add(token_id)
        hashes.add(digest)
        entries.append(_entry(info, digest))
    return entries


def _encode_file(entries: Iterable[_Entry]) -> bytes:
    tokens = [{**e.info.to_dict(), "sha256": e.sha256} for e in entries]
    return orjson.dumps({"version": FORMAT_VERSION, "tokens": tokens}, option=orjson.OPT_INDENT_2)


def _write_private(path: Path, data: bytes, *, exclusive: bool) -> None:
    """Write `data` to a new file of mode 0600 and fsync it. `exclusive`: fail if it exists."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    if not exclusive:
        flags = (flags & ~os.O_EXCL) | os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask, and for a file that already existed
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created 0600 if need be), across processes."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class TokenStore:
    """API tokens in a JSON file; see the module doc for the file, reloads and threads."""

    def __init__(
        self,
        path: Path | str,
        *,
        reload_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Reads the file if it exists (raises TokenStoreError if it is invalid); a missing
        file is an empty store, created by the first change or by `bootstrap`."""
        # set once
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._interval = reload_interval_s
        self._clock = clock
        # changes and reloads within this process, under _mutex; _snapshot is read without it
        self._mutex = threading.Lock()
        self._snapshot = self._read()
        self._checked_at = clock()

    # --- reading ----------------------------------------------------------------------------

    def _read(self) -> _Snapshot:
        """The file as it is now. Raises TokenStoreError if it is unreadable or invalid."""
        try:
            with self.path.open("rb") as file:
                signature = _signature(os.fstat(file.fileno()))
                data = file.read()
        except FileNotFoundError:
            return _EMPTY
        except OSError as error:
            raise TokenStoreError(f"token file {self.path}: {error.strerror}") from None
        return _Snapshot.of(_parse_file(self.path, data), signature)

    def reload(self, *, force: bool = False) -> bool:
        """Re-read the file if it changed since last read (or `force`). Returns whether the
        tokens were replaced. Keeps the current tokens, and logs, if the file is invalid."""
        with self._mutex:
            return self._reload_locked(force)

    def _reload_locked(self, force: bool) -> bool:
        self._checked_at = self._clock()
        try:
            signature: tuple[int, ...] | None = _signature(os.stat(self.path))
        except FileNotFoundError:
            signature = None
        except OSError as error:
            logger.error("token file %s: %s; keeping the tokens read before", self.path, error)
            return False
        if not force and signature == self._snapshot.signature:
            return False
        try:
            snapshot = self._read()
        except TokenStoreError as error:
            logger.error("%s; keeping the tokens read before", error)
            return False
        if snapshot.signature is None and self._snapshot.signature is not None:
            logger.warning("token file %s was deleted: no token is valid now", self.path)
        self._snapshot = snapshot
        return True

    def _maybe_reload(self) -> None:
        if self._clock() - self._checked_at < self._interval:
            return
        # Never wait here (the event loop calls this): whoever holds the mutex is reloading or
        # changing the file, and leaves a fresh snapshot.
        if self._mutex.acquire(blocking=False):
            try:
                self._reload_locked(False)
            finally:
                self._mutex.release()

    def list(self, *, include_revoked: bool = True) -> list[TokenInfo]:
        """Every token, oldest first; no secrets (the store has none) and no hashes. Reflects
        the file as of the last reload check."""
        self._maybe_reload()
        infos = [e.info for e in self._snapshot.entries]
        return [i for i in infos if include_revoked or i.active]

    def get(self, token_id: str) -> TokenInfo:
        """Raises TokenNotFound."""
        self._maybe_reload()
        entry = self._snapshot.by_id.get(token_id)
        if entry is None:
            raise TokenNotFound(token_id)
        return entry.info

    def authenticate(self, secret: str | None) -> Principal:
        """The principal of an active token. Raises Unauthenticated: missing (None or empty),
        malformed (not `mg_` + 43 base64url characters), unknown, revoked."""
        if not secret:
            raise Unauthenticated("missing", "no token: send 'Authorization: Bearer <token>'")
        if len(secret) != TOKEN_CHARS or not _TOKEN.fullmatch(secret):
            raise Unauthenticated(
                "malformed", f"malformed token: expected '{TOKEN_PREFIX}' and 43 characters"
            )
        self._maybe_reload()
        digest = _digest(secret)
        # Looking the hash up in a dict is not constant-time, and needs not be: what its timing
        # could leak is about SHA-256(presented value), and a secret has 256 random bits, so
        # learning bits of hashes brings an attacker no closer to a valid secret's preimage.
        # The compare_digest after it keeps the final check constant-time all the same.
        entry = self._snapshot.by_hash.get(digest)
        if entry is None or not hmac.compare_digest(entry.sha256, digest):
            raise Unauthenticated("unknown", "unknown token")
        if entry.info.revoked_at is not None:
            raise Unauthenticated("revoked", f"token {entry.info.id} has been revoked")
        return entry.principal

    # --- changing ---------------------------------------------------------------------------

    def _write(self, entries: Iterable[_Entry]) -> _Snapshot:
        """Under _mutex and the file lock: replace the file atomically; the new snapshot."""
        entries = tuple(entries)
        directory = self.path.parent
        temp = directory / f".{self.path.name}.{secrets.token_hex(8)}.tmp"
        try:
            _write_private(temp, _encode_file(entries), exclusive=True)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        fsync_dir(directory)
        snapshot = _Snapshot.of(entries, _signature(os.stat(self.path)))
        self._snapshot = snapshot
        self._checked_at = self._clock()
        return snapshot

    @contextlib.contextmanager
    def _changing(self) -> Iterator[_Snapshot]:
        """Hold both locks; yields the file's current tokens (re-read: another process may
        have changed them)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._mutex, _file_lock(self._lock_path):
            current = self._read()
            self._snapshot = current
            yield current

    @staticmethod
    def _new(
        current: _Snapshot, name: str, role: Role, scopes: frozenset[str]
    ) -> tuple[_Entry, str]:
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(4)
        while token_id in current.by_id:
            token_id = secrets.token_hex(4)
        info = TokenInfo(token_id, name, role, scopes, created_at=_now())
        return _entry(info, _digest(secret)), secret

    def create(
        self, name: str, role: Role | str, scopes: Iterable[str] | None = None
    ) -> tuple[TokenInfo, str]:
        """Create a token. Returns its info and its secret: the only time the secret is seen
        (the file keeps its hash). Raises InvalidInput for a bad name, role or scope. Blocking
        (fsync)."""
        name = check_token_name(name)
        role = role if isinstance(role, Role) else Role.parse(role)
        scope_set = check_scopes(scopes)
        with self._changing() as current:
            entry, secret = self._new(current, name, role, scope_set)
            self._write((*current.entries, entry))
        return entry.info, secret

    def revoke(self, token_id: str) -> tuple[TokenInfo, bool]:
        """Revoke a token; idempotent. Returns its info and whether this call revoked it (False:
        it already was; journal only on True). Raises TokenNotFound. Blocking (fsync)."""
        with self._changing() as current:
            entry = current.by_id.get(token_id)
            if entry is None:
                raise TokenNotFound(token_id)
            if entry.info.revoked_at is not None:
                return entry.info, False
            info = TokenInfo(
                entry.info.id,
                entry.info.name,
                entry.info.role,
                entry.info.scopes,
                entry.info.created_at,
                revoked_at=_now(),
            )
            revoked = _entry(info, entry.sha256)
            self._write(revoked if e is entry else e for e in current.entries)
        return info, True

    def prepare(
        self, name: str, role: Role | str, scopes: Iterable[str] | None = None
    ) -> tuple[TokenInfo, str, str]:
        """A new token's info, secret and the secret's SHA-256, not yet stored: the control
        path journals it, then `restore`s it. Raises InvalidInput. Does no I/O."""
        name = check_token_name(name)
        role = role if isinstance(role, Role) else Role.parse(role)
        entry, secret = self._new(self._snapshot, name, role, check_scopes(scopes))
        return entry.info, secret, entry.sha256

    def restore(self, info: TokenInfo, digest: str) -> bool:
        """Make the file hold `info` with secret hash `digest` (a journaled creation or
        revocation, replayed or just recorded). Idempotent: False when it already did.
        Blocking (fsync)."""
        with self._changing() as current:
            existing = current.by_id.get(info.id)
            if existing is not None and existing.info == info and existing.sha256 == digest:
                return False
            kept = [e for e in current.entries if e.info.id != info.id]
            self._write((*kept, _entry(info, digest)))
        return True

    def bootstrap(self, name: str = "admin") -> tuple[TokenInfo, str] | None:
        """First start: if the store file does not exist, create an unscoped admin token, write
        its secret to `<folder>/admin-token` (0600, never overwriting) and return info and
        secret; else None. Raises TokenStoreError if admin-token exists without a store file
        (left from a store that is gone: remove it to start afresh). Blocking."""
        secret_path = self.path.parent / ADMIN_TOKEN_FILE
        with self._changing() as current:
            if current.signature is not None:
                return None
            entry, secret = self._new(current, check_token_name(name), Role.ADMIN, frozenset())
            try:
                # the secret file first: should the store's write fail, the next start finds
                # admin-token without a store and says so, rather than minting a second one
                _write_private(secret_path, (secret + "\n").encode("ascii"), exclusive=True)
            except FileExistsError:
                raise TokenStoreError(
                    f"{secret_path} exists but the token file {self.path} does not: it holds a "
                    "token of a store that is gone; remove it to create a new admin token"
                ) from None
            fsync_dir(self.path.parent)
            self._write((entry,))
        return entry.info, secret

    def digest_of(self, token_id: str) -> str:
        """The stored secret hash of a token (for the journal's record of it). Raises
        TokenNotFound."""
        self._maybe_reload()
        entry = self._snapshot.by_id.get(token_id)
        if entry is None:
            raise TokenNotFound(token_id)
        return entry.sha256


def bootstrap(path: Path | str) -> str | None:
    """`TokenStore(path).bootstrap()`'s secret: the new admin token's secret on first start
    (also written to `<folder>/admin-token`, 0600), None on later starts."""
    created = TokenStore(path).bootstrap()
    return None if created is None else created[1]


# ---- credentials -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bearer:
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Basic:
    username: str
    password: str = field(repr=False)


Credentials = Bearer | Basic


def _malformed(what: str) -> Unauthenticated:
    return Unauthenticated("malformed", f"malformed authorization: {what}")


def parse_authorization(value: str | None) -> Credentials | None:
    """An HTTP `Authorization` value or a gRPC `authorization` metadata value: `Bearer <token>`
    or `Basic <base64 of user:password>` (schemes case-insensitive). None or blank: None (no
    credentials). Raises Unauthenticated for another scheme or a malformed value; the message
    names the scheme, never the credentials."""
    if value is None or not value.strip():
        return None
    if len(value) > MAX_CREDENTIALS_CHARS:
        raise _malformed(f"longer than {MAX_CREDENTIALS_CHARS} characters")
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    lowered = scheme.lower()
    if lowered == "bearer":
        if not rest:
            raise _malformed("'Bearer' without a token")
        if any(c.isspace() for c in rest):
            raise _malformed("blanks inside the bearer token")
        return Bearer(rest)
    if lowered == "basic":
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise _malformed("Basic credentials are not base64 of UTF-8 text") from None
        username, colon, password = decoded.partition(":")
        if not colon or not username:
            raise _malformed("Basic credentials must be base64 of 'user:password'")
        return Basic(username, password)
    if rest and _SCHEME.fullmatch(scheme):
        raise Unauthenticated(
            "scheme", f"unsupported authorization scheme '{scheme}': use 'Bearer <token>'"
        )
    # No recognizable scheme: most likely a bare token. Do not echo any of it.
    raise _malformed("expected 'Bearer <token>'")


def single_authorization(values: Iterable[str | bytes] | None) -> str | None:
    """The one `Authorization` value among `values` (e.g. aiohttp's `headers.getall(...)`),
    None when there is none. Raises Unauthenticated for several (which one would count?)."""
    found: list[str | bytes] = list(values or ())
    if not found:
        return None
    if len(found) > 1:
        raise _malformed("more than one authorization value")
    value = found[0]
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed("not ASCII") from None
    return value


def metadata_authorization(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The `authorization` value of gRPC invocation metadata (`context.invocation_metadata()`:
    (key, value) pairs, keys lowercase); None when absent. Raises Unauthenticated for several."""
    if metadata is None:
        return None
    return single_authorization(value for key, value in metadata if key.lower() == "authorization")


# ---- the facade --------------------------------------------------------------------------------


class BasicSource(Protocol):
    """A second source of identities for `Basic` credentials (LDAP). Returns the principal
    (kind "ldap", its role and scopes from the directory's groups) or raises Unauthenticated
    (reason "rejected"); another GatewayError (e.g. UNAVAILABLE: the directory is down)
    passes through. May block."""

    def authenticate_basic(self, username: str, password: str) -> Principal: ...


class Authenticator:
    """Who is calling: API tokens, an optional `BasicSource`, and `ANONYMOUS` for inference
    when inference auth is off.

    `admin(value)` always requires credentials. `inference(value)` requires them when
    `inference_auth` is on; when it is off, a request without credentials is ANONYMOUS and a
    request with credentials is still authenticated (a bad token is refused, a good one names
    the caller in the prediction records). `value` is the Authorization header or metadata
    value (see `single_authorization` / `metadata_authorization`).

    The token path is cheap enough for the event loop; a BasicSource may block (a directory
    bind), so async callers use `authenticate_async`, which runs only that path in a thread.
    """

    def __init__(
        self,
        tokens: TokenStore,
        basic: BasicSource | None = None,
        *,
        inference_auth: bool = True,
    ) -> None:
        self.tokens = tokens
        self.basic = basic
        self.inference_auth = inference_auth
        # the HTTP WWW-Authenticate value for 401 responses
        self.challenge = f'Bearer realm="{REALM}"' + (
            f', Basic realm="{REALM}", charset="UTF-8"' if basic is not None else ""
        )

    def _resolve(self, value: str | None, allow_anonymous: bool) -> Principal | Basic:
        """The principal, or Basic credentials left for the second source."""
        credentials = parse_authorization(value)
        if credentials is None:
            if allow_anonymous:
                return ANONYMOUS
            raise Unauthenticated("missing", "no credentials: send 'Authorization: Bearer <token>'")
        if isinstance(credentials, Bearer):
            return self.tokens.authenticate(credentials.token)
        if self.basic is None:
            raise Unauthenticated(
                "scheme", "authorization scheme 'Basic' is not enabled: use 'Bearer <token>'"
            )
        return credentials

    def _basic(self, credentials: Basic) -> Principal:
        source = self.basic
        if source is None:  # _resolve returns Basic only when there is a source
            raise RuntimeError("no BasicSource configured")
        principal = source.authenticate_basic(credentials.username, credentials.password)
        if not isinstance(principal, Principal):
            raise TypeError(
                f"{type(source).__name__}.authenticate_basic returned "
                f"{type(principal).__name__}, not a Principal"
            )
        return principal

    def authenticate(self, value: str | None, *, allow_anonymous: bool = False) -> Principal:
        """The caller's principal; ANONYMOUS for no credentials if `allow_anonymous`. Raises
        Unauthenticated. May block when the credentials are Basic."""
        resolved = self._resolve(value, allow_anonymous)
        return self._basic(resolved) if isinstance(resolved, Basic) else resolved

    async def authenticate_async(
        self, value: str | None, *, allow_anonymous: bool = False
    ) -> Principal:
        """`authenticate`, running a BasicSource in a thread; tokens are checked inline."""
        resolved = self._resolve(value, allow_anonymous)
        if isinstance(resolved, Basic):
            return await asyncio.to_thread(self._basic, resolved)
        return resolved

    def admin(self, value: str | None) -> Principal:
        """For the admin API: credentials are always required."""
        return self.authenticate(value)

    def inference(self, value: str | None) -> Principal:
        """For inference: ANONYMOUS without credentials when inference auth is off."""
        return self.authenticate(value, allow_anonymous=not self.inference_auth)
