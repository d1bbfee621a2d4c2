"""Identities and roles: the token store and its file, credential parsing, the authorize matrix.

The matrix test reads the tables in `rbac`'s module doc (the ones the README copies) and checks
every role against every operation, so the documentation cannot drift from the code. Reloads
are driven by a fake clock and an explicit `os.utime`, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import fnmatch
import hashlib
import os
import re
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from gateway.errors import ErrorKind, GatewayError, InvalidInput
from gateway.governance import rbac
from gateway.governance.identity import (
    ADMIN_TOKEN_FILE,
    TOKEN_CREATED,
    TOKEN_REVOKED,
    Authenticator,
    Basic,
    Bearer,
    TokenNotFound,
    TokenStore,
    TokenStoreError,
    Unauthenticated,
    bootstrap,
    metadata_authorization,
    parse_authorization,
    single_authorization,
)
from gateway.governance.journal import Journal, JournalOptions
from gateway.governance.ledger import ADMIN
from gateway.governance.rbac import (
    ANONYMOUS,
    DENIED,
    OPERATIONS,
    Forbidden,
    Principal,
    Role,
    actor_of,
    authorize,
    authorize_operation,
    denial_payload,
    permits,
    visible,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "auth" / "tokens.json"


@pytest.fixture
def open_umask() -> Iterator[None]:
    """umask 0: a file is 0600 because the store made it so, not because the umask did."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


# ---- creating, listing, authenticating ---------------------------------------------------------


def test_create_shows_the_secret_once_and_stores_only_its_hash(path: Path) -> None:
    store = TokenStore(path)
    info, secret = store.create("ci-bot", Role.PREDICTOR, ["fraud", "credit_risk"])
    assert re.fullmatch(r"mg_[A-Za-z0-9_-]{43}", secret)
    raw = path.read_bytes()
    assert secret.encode() not in raw
    assert secret[3:].encode() not in raw  # not even without its prefix
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in raw
    stored = orjson.loads(raw)["tokens"]
    assert [t["id"] for t in stored] == [info.id]
    assert "secret" not in stored[0]

    principal = store.authenticate(secret)
    assert principal == Principal(
        "ci-bot", Role.PREDICTOR, frozenset({"fraud", "credit_risk"}), "token", info.id
    )
    assert principal.actor == f"token:ci-bot/{info.id}"
    # a second store on the same file (another process) authenticates it too
    assert TokenStore(path).authenticate(secret) == principal


def test_list_has_no_secrets_nor_hashes(path: Path) -> None:
    store = TokenStore(path)
    first, s1 = store.create("alice", "operator")
    second, s2 = store.create("bob", Role.VIEWER)
    listed = store.list()
    assert listed == [first, second]
    text = repr(listed) + orjson.dumps([i.to_dict() for i in listed]).decode()
    for secret in (s1, s2):
        assert secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text
    assert set(first.to_dict()) == {"id", "name", "role", "scopes", "created_at", "revoked_at"}
    assert first.to_dict()["role"] == "operator"


def test_files_are_mode_0600(path: Path, open_umask: None) -> None:
    store = TokenStore(path)
    info, _ = store.create("a", Role.ADMIN)
    assert mode(path) == 0o600
    assert mode(path.with_name("tokens.json.lock")) == 0o600
    assert mode(path.parent) == 0o700  # created by the store
    store.revoke(info.id)
    assert mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_revoke_makes_the_token_unauthenticated_and_is_idempotent(path: Path) -> None:
    store = TokenStore(path)
    info, secret = store.create("a", Role.OPERATOR)
    other, other_secret = store.create("b", Role.OPERATOR)
    revoked, changed = store.revoke(info.id)
    assert changed and revoked.revoked_at is not None and not revoked.active
    with pytest.raises(Unauthenticated) as caught:
        store.authenticate(secret)
    assert caught.value.reason == "revoked"
    assert caught.value.kind is ErrorKind.UNAUTHENTICATED
    assert secret not in caught.value.message
    assert store.authenticate(other_secret).token_id == other.id  # the other one still works
    again, changed = store.revoke(info.id)
    assert not changed and again == revoked
    with pytest.raises(TokenNotFound):
        store.revoke("nope")
    assert store.list(include_revoked=False) == [other]
    assert store.get(info.id) == revoked


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("mg_", "malformed"),
        ("mg_short", "malformed"),
        ("xx_" + "a" * 43, "malformed"),
        ("mg_" + "a" * 42 + "=", "malformed"),
        ("mg_" + "a" * 44, "malformed"),
        ("mg_" + "é" * 43, "malformed"),
        ("mg_" + "a" * 43, "unknown"),
    ],
)
def test_authenticate_refuses_missing_malformed_and_unknown(
    path: Path, secret: str | None, reason: str
) -> None:
    store = TokenStore(path)
    store.create("a", Role.ADMIN)
    with pytest.raises(Unauthenticated) as caught:
        store.authenticate(secret)
    assert caught.value.reason == reason
    if secret and len(secret) > 3:  # the help text names the prefix itself
        assert secret not in caught.value.message


def test_create_validates_name_role_and_scopes(path: Path) -> None:
    store = TokenStore(path)
    for name in ("", "   ", "a\nb", "x" * 129):
        with pytest.raises(InvalidInput):
            store.create(name, Role.VIEWER)
    with pytest.raises(InvalidInput, match="roles are viewer, predictor"):
        store.create("a", "root")
    with pytest.raises(InvalidInput, match="not one string"):
        store.create("a", Role.VIEWER, "fraud")  # type: ignore[arg-type]
    for scope in ("", "a b", "a,b", 3):
        with pytest.raises(InvalidInput):
            store.create("a", Role.VIEWER, [scope])  # type: ignore[list-item]
    assert not path.exists()  # nothing was written


# ---- the file shared with other processes --------------------------------------------------------


def test_a_revocation_by_another_store_is_seen_at_the_next_reload_check(path: Path) -> None:
    clock = FakeClock()
    server = TokenStore(path, clock=clock)  # reload_interval_s = 1.0
    info, secret = server.create("a", Role.PREDICTOR)
    cli = TokenStore(path)  # `modelgate token revoke` in another process
    cli.revoke(info.id)
    new, new_secret = cli.create("b", Role.VIEWER)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # coarse mtimes: be sure

    clock.now += 0.5  # within the interval: the server has not looked yet
    assert server.authenticate(secret).token_id == info.id
    clock.now += 0.5  # the interval is up: the next authenticate stats the file and reloads
    with pytest.raises(Unauthenticated) as caught:
        server.authenticate(secret)
    assert caught.value.reason == "revoked"
    assert server.authenticate(new_secret).token_id == new.id
    assert [i.id for i in server.list()] == [info.id, new.id]


def test_an_unchanged_file_is_not_reread_and_changes_reload_on_demand(path: Path) -> None:
    store = TokenStore(path, reload_interval_s=0)
    store.create("a", Role.VIEWER)
    assert store.reload() is False
    TokenStore(path).create("b", Role.VIEWER)
    assert store.reload() is True
    assert [i.name for i in store.list()] == ["a", "b"]


def test_a_broken_file_keeps_the_last_good_tokens_and_a_deleted_one_fails_closed(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = TokenStore(path, reload_interval_s=0)
    _, secret = store.create("a", Role.VIEWER)
    path.write_bytes(b"{not json")
    assert store.authenticate(secret).name == "a"
    assert "keeping the tokens read before" in caplog.text
    with pytest.raises(TokenStoreError, match="not JSON"):
        TokenStore(path)  # at start-up a broken file stops the server
    with pytest.raises(TokenStoreError):
        store.create("b", Role.VIEWER)  # and is never overwritten by a change
    path.unlink()
    with pytest.raises(Unauthenticated) as caught:
        store.authenticate(secret)
    assert caught.value.reason == "unknown"


@pytest.mark.parametrize(
    "document",
    [
        {"version": 2, "tokens": []},
        {"version": 1},
        {"version": 1, "tokens": [{"id": "x"}]},
        {
            "version": 1,
            "tokens": [
                {
                    "id": "x",
                    "name": "a",
                    "role": "god",
                    "scopes": [],
                    "created_at": "t",
                    "revoked_at": None,
                    "sha256": "0" * 64,
                }
            ],
        },
    ],
)
def test_an_invalid_file_is_refused_naming_it(path: Path, document: object) -> None:
    path.parent.mkdir()
    path.write_bytes(orjson.dumps(document))
    with pytest.raises(TokenStoreError, match=re.escape(str(path))):
        TokenStore(path)


def test_concurrent_creates_lose_no_token(path: Path) -> None:
    shared = TokenStore(path)
    threads_n, per_thread = 8, 12
    barrier = threading.Barrier(threads_n)
    created: list[tuple[str, str]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        # even threads share one store (the mutex), odd ones have their own (the file lock)
        store = shared if n % 2 == 0 else TokenStore(path)
        barrier.wait()
        try:
            for i in range(per_thread):
                info, secret = store.create(f"t{n}-{i}", Role.VIEWER)
                with lock:
                    created.append((info.id, secret))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    fresh = TokenStore(path)
    assert len(created) == threads_n * per_thread
    assert sorted(i.id for i in fresh.list()) == sorted(token_id for token_id, _ in created)
    for token_id, secret in created:
        assert fresh.authenticate(secret).token_id == token_id


# ---- first start ---------------------------------------------------------------------------------


def test_bootstrap_creates_an_admin_token_once(path: Path, open_umask: None) -> None:
    secret = bootstrap(path)
    assert secret is not None
    secret_file = path.parent / ADMIN_TOKEN_FILE
    assert secret_file.read_text() == secret + "\n"
    assert mode(secret_file) == 0o600
    assert mode(path) == 0o600
    assert secret.encode() not in path.read_bytes()
    principal = TokenStore(path).authenticate(secret)
    assert (principal.role, principal.scopes, principal.name) == (Role.ADMIN, frozenset(), "admin")

    assert bootstrap(path) is None  # later starts
    assert secret_file.read_text() == secret + "\n"
    assert len(TokenStore(path).list()) == 1


def test_bootstrap_returns_the_info_to_journal(path: Path) -> None:
    created = TokenStore(path).bootstrap()
    assert created is not None
    info, secret = created
    assert info.role is Role.ADMIN and secret not in str(info.to_dict())


def test_bootstrap_does_nothing_when_a_store_exists(path: Path) -> None:
    TokenStore(path).create("ops", Role.ADMIN)
    assert bootstrap(path) is None
    assert not (path.parent / ADMIN_TOKEN_FILE).exists()


def test_bootstrap_never_overwrites_a_stale_admin_token(path: Path) -> None:
    assert bootstrap(path) is not None
    path.unlink()  # the store is gone, its admin-token is not
    before = (path.parent / ADMIN_TOKEN_FILE).read_bytes()
    with pytest.raises(TokenStoreError, match="remove it"):
        bootstrap(path)
    assert (path.parent / ADMIN_TOKEN_FILE).read_bytes() == before
    assert not path.exists()


# ---- credentials ---------------------------------------------------------------------------------

TOKEN = "mg_" + "A" * 43


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        (f"Bearer {TOKEN}", TOKEN),
        (f"bearer {TOKEN}", TOKEN),
        (f"BEARER {TOKEN}", TOKEN),
        (f"  Bearer   {TOKEN}  ", TOKEN),
    ],
)
def test_bearer_tokens_are_parsed(header: str | None, expected: str | None) -> None:
    assert parse_authorization(header) == (None if expected is None else Bearer(expected))


@pytest.mark.parametrize(
    ("header", "reason", "says"),
    [
        ("Bearer", "malformed", "without a token"),
        ("Bearer   ", "malformed", "without a token"),
        (f"Bearer {TOKEN} extra", "malformed", "blanks"),
        (TOKEN, "malformed", "expected 'Bearer <token>'"),  # a bare token, scheme forgotten
        (f"Token {TOKEN}", "scheme", "unsupported authorization scheme 'Token'"),
        ("Digest username=x", "scheme", "'Digest'"),
        ("Bearer " + "x" * 9000, "malformed", "longer than"),
    ],
)
def test_malformed_or_unsupported_credentials_are_refused(
    header: str, reason: str, says: str
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        parse_authorization(header)
    assert caught.value.reason == reason
    assert says in caught.value.message
    assert TOKEN not in caught.value.message


def test_basic_credentials() -> None:
    encoded = base64.b64encode("alice:pa:ss wörd".encode()).decode()
    credentials = parse_authorization(f"basic {encoded}")
    assert credentials == Basic("alice", "pa:ss wörd")
    assert "pa:ss" not in repr(credentials)
    assert TOKEN not in repr(Bearer(TOKEN))
    for bad in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic "):
        with pytest.raises(Unauthenticated) as caught:
            parse_authorization(bad)
        assert caught.value.reason == "malformed"


def test_grpc_metadata_and_repeated_headers() -> None:
    assert metadata_authorization(None) is None
    assert metadata_authorization([("x-request-id", "r")]) is None
    pairs = [("x-request-id", "r"), ("authorization", f"Bearer {TOKEN}")]
    assert parse_authorization(metadata_authorization(pairs)) == Bearer(TOKEN)
    assert metadata_authorization([("authorization", f"Bearer {TOKEN}".encode())]) == (
        f"Bearer {TOKEN}"
    )
    with pytest.raises(Unauthenticated, match="more than one"):
        metadata_authorization([("authorization", "Bearer a"), ("authorization", "Bearer b")])
    assert single_authorization([]) is None
    with pytest.raises(Unauthenticated, match="more than one"):
        single_authorization(["Bearer a", "Bearer b"])


# ---- the authenticator ---------------------------------------------------------------------------


class FakeDirectory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def authenticate_basic(self, username: str, password: str) -> Principal:
        self.calls.append((username, password, threading.get_ident()))
        if password != "right":
            raise Unauthenticated("rejected", "invalid user name or password")
        return Principal(username, Role.APPROVER, kind="ldap")


def test_authenticator_admin_always_needs_credentials(path: Path) -> None:
    store = TokenStore(path)
    _, secret = store.create("ops", Role.ADMIN)
    auth = Authenticator(store, inference_auth=False)
    with pytest.raises(Unauthenticated) as caught:
        auth.admin(None)
    assert caught.value.reason == "missing"
    assert auth.admin(f"Bearer {secret}").role is Role.ADMIN
    assert auth.challenge == 'Bearer realm="modelgate"'
    with pytest.raises(Unauthenticated) as caught:
        auth.admin("Basic YWxpY2U6cHc=")
    assert caught.value.reason == "scheme" and "not enabled" in caught.value.message


def test_authenticator_inference_anonymous_only_when_off_and_without_credentials(
    path: Path,
) -> None:
    store = TokenStore(path)
    _, secret = store.create("app", Role.PREDICTOR)
    off = Authenticator(store, inference_auth=False)
    assert off.inference(None) is ANONYMOUS
    assert off.inference("") is ANONYMOUS
    assert off.inference(f"Bearer {secret}").name == "app"  # named when it says who it is
    with pytest.raises(Unauthenticated):
        off.inference(f"Bearer {TOKEN}")  # a wrong token is still wrong
    on = Authenticator(store)
    with pytest.raises(Unauthenticated):
        on.inference(None)
    assert on.inference(f"Bearer {secret}").name == "app"
    authorize_operation(ANONYMOUS, "infer", "any")
    with pytest.raises(Forbidden):
        authorize_operation(ANONYMOUS, "deploy", "any")


async def test_authenticator_basic_goes_to_the_second_source_in_a_thread(path: Path) -> None:
    directory = FakeDirectory()
    auth = Authenticator(TokenStore(path), directory)
    assert "Basic" in auth.challenge
    good = "Basic " + base64.b64encode(b"alice:right").decode()
    bad = "Basic " + base64.b64encode(b"alice:wrong").decode()
    assert auth.authenticate(good) == Principal("alice", Role.APPROVER, kind="ldap")
    principal = await auth.authenticate_async(good)
    assert principal.actor == "ldap:alice"
    assert directory.calls[-1][2] != threading.get_ident()  # off the event loop's thread
    with pytest.raises(Unauthenticated) as caught:
        await auth.authenticate_async(bad)
    assert caught.value.reason == "rejected"
    assert [c[:2] for c in directory.calls] == [("alice", "right")] * 2 + [("alice", "wrong")]


# ---- roles and the authorize matrix --------------------------------------------------------------


def test_roles_are_ordered_and_parse_from_their_names() -> None:
    assert list(Role) == sorted(Role)
    assert [r.label for r in Role] == ["viewer", "predictor", "operator", "approver", "admin"]
    assert Role.VIEWER < Role.PREDICTOR < Role.OPERATOR < Role.APPROVER < Role.ADMIN
    for role in Role:
        assert Role.parse(role.label) is role
    assert Role.parse(" Admin ") is Role.ADMIN
    for bad in ("root", "", "1"):
        with pytest.raises(InvalidInput):
            Role.parse(bad)


def _doc_tables() -> tuple[dict[str, Role], dict[Role, set[str]]]:
    """From rbac's module doc: operation -> role (first table) and role -> allowed operations
    (the matrix, its columns expanded by the legend)."""
    doc = rbac.__doc__ or ""
    needs = {
        m[1]: Role.parse(m[2])
        for m in re.finditer(r"^\| `([\w.]+)`\s*\|.*\|\s*(\w+)\s*\|$", doc, re.M)
    }
    legend = doc.split("Columns:", 1)[1].split("\n\n", 1)[0]
    columns: dict[str, list[str]] = {"infer": ["infer"], "approve": ["approve"]}
    for part in legend.replace("\n", " ").split(";"):
        name, _, members = part.partition("=")
        columns[name.strip().strip("*")] = [
            m.strip().rstrip(".") for m in members.split(",") if m.strip()
        ]
    header = next(line for line in doc.splitlines() if line.startswith("| role"))
    titles = [c.strip() for c in header.strip("|").split("|")][1:]
    allowed: dict[Role, set[str]] = {}
    for role in Role:
        row = next(line for line in doc.splitlines() if line.startswith(f"| {role.label} "))
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        allowed[role] = {
            op
            for title, cell in zip(titles, cells, strict=True)
            if cell.startswith("✓")
            for pattern in columns[title]
            for op in OPERATIONS
            if fnmatch.fnmatchcase(op, pattern)
        }
    return needs, allowed


DOC_NEEDS, DOC_ALLOWED = _doc_tables()


def test_the_documented_operations_are_the_table() -> None:
    assert DOC_NEEDS == OPERATIONS
    assert set().union(*DOC_ALLOWED.values()) == set(OPERATIONS)


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.label)
def test_authorize_matrix(role: Role, operation: str) -> None:
    expected = operation in DOC_ALLOWED[role]
    assert expected == (role >= OPERATIONS[operation])
    principal = Principal("p", role)
    for deployment in ("fraud", None):  # unscoped: the same on one deployment and server-wide
        assert permits(principal, operation, deployment) is expected
        if expected:
            authorize_operation(principal, operation, deployment)
        else:
            with pytest.raises(Forbidden) as caught:
                authorize_operation(principal, operation, deployment)
            error = caught.value
            assert error.kind is ErrorKind.FORBIDDEN and error.reason == "role"
            assert (error.needed, error.operation, error.deployment) == (
                OPERATIONS[operation],
                operation,
                deployment,
            )
            assert f"needs role '{OPERATIONS[operation].label}'" in error.message
            assert f"has role '{role.label}'" in error.message


def test_scopes_limit_a_principal_to_its_deployments() -> None:
    operator = Principal("ops", Role.OPERATOR, frozenset({"fraud", "churn"}), token_id="abcd1234")
    authorize(operator, Role.OPERATOR, "fraud")
    with pytest.raises(Forbidden) as caught:
        authorize(operator, Role.OPERATOR, "credit_risk", operation="traffic")
    error = caught.value
    assert error.reason == "scope"
    assert "'churn', 'fraud'" in error.message and "'credit_risk'" in error.message
    assert "token 'ops' (id abcd1234)" in error.message
    with pytest.raises(Forbidden, match="server-wide") as caught:
        authorize(operator, Role.VIEWER, None)  # a scoped principal: nothing server-wide
    # the role is checked first
    with pytest.raises(Forbidden) as caught:
        authorize(operator, Role.APPROVER, "credit_risk")
    assert caught.value.reason == "role"
    # a scoped admin cannot mint tokens (it would escape its scope)
    scoped_admin = Principal("a", Role.ADMIN, frozenset({"fraud"}))
    assert permits(scoped_admin, "approve", "fraud")
    assert not permits(scoped_admin, "token.create")
    # listings keep what is in scope, and still need the role
    assert visible(operator, Role.VIEWER, ["churn", "credit_risk", "fraud"]) == ["churn", "fraud"]
    assert visible(Principal("v", Role.VIEWER), Role.VIEWER, ["a", "b"]) == ["a", "b"]
    with pytest.raises(Forbidden):
        visible(Principal("v", Role.VIEWER), Role.OPERATOR, ["a"])


def test_token_scopes_reach_the_principal(path: Path) -> None:
    store = TokenStore(path)
    _, secret = store.create("fraud-ops", Role.OPERATOR, ["fraud"])
    principal = store.authenticate(secret)
    authorize_operation(principal, "rollback", "fraud")
    assert not permits(principal, "rollback", "churn")


def test_unknown_operation_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        authorize_operation(Principal("p", Role.ADMIN), "launch-missiles")


# ---- journaling ----------------------------------------------------------------------------------


def test_denial_payload() -> None:
    viewer = Principal("v", Role.VIEWER, frozenset({"fraud"}), token_id="0011aabb")
    error = Forbidden(viewer, Role.PREDICTOR, "fraud", operation="infer")
    payload = denial_payload(viewer, "infer", error, "fraud")
    assert payload == {
        "operation": "infer",
        "deployment": "fraud",
        "error": "forbidden",
        "reason": error.message,
        "principal": {
            "name": "v",
            "kind": "token",
            "role": "viewer",
            "scopes": ["fraud"],
            "token_id": "0011aabb",
        },
    }
    assert actor_of(viewer) == "token:v/0011aabb"
    missing = Unauthenticated("missing", "no token")
    assert denial_payload(None, "deploy", missing)["principal"] is None
    assert denial_payload(None, "deploy", missing)["error"] == "unauthenticated"
    assert denial_payload(None, "deploy", "text")["error"] is None
    assert actor_of(None) == "unauthenticated"
    assert actor_of(ANONYMOUS) == "anonymous"
    assert isinstance(error, GatewayError)


async def test_token_events_and_denials_journal_without_secrets(path: Path, tmp_path: Path) -> None:
    store = TokenStore(path)
    info, secret = await asyncio.to_thread(store.create, "ci", Role.PREDICTOR, ["fraud"])
    revoked, _ = await asyncio.to_thread(store.revoke, info.id)
    journal = Journal.open(tmp_path / "journal", JournalOptions(fsync="off"))
    try:
        await journal.append(ADMIN, TOKEN_CREATED, "token:admin/x", info.to_dict())
        await journal.append(ADMIN, TOKEN_REVOKED, "token:admin/x", revoked.to_dict())
        try:
            store.authenticate(secret)
        except Unauthenticated as error:
            await journal.append(
                ADMIN, DENIED, actor_of(None), denial_payload(None, "infer", error)
            )
        records = list(journal.read(ADMIN))
    finally:
        await journal.aclose()
    assert [r.kind for r in records] == [TOKEN_CREATED, TOKEN_REVOKED, DENIED]
    assert records[2].payload["reason"] == f"token {info.id} has been revoked"
    digest = hashlib.sha256(secret.encode()).hexdigest().encode()
    for file in (tmp_path / "journal").rglob("*"):
        if file.is_file():
            assert secret.encode() not in file.read_bytes()
            assert digest not in file.read_bytes()


def test_prepare_stores_nothing_and_restore_is_idempotent(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.json")
    info, secret, digest = store.prepare("app", "predictor", ["fraud"])
    assert not (tmp_path / "tokens.json").exists()
    with pytest.raises(Unauthenticated):
        store.authenticate(secret)
    assert store.restore(info, digest) is True
    assert store.restore(info, digest) is False  # replaying the same record changes nothing
    assert store.authenticate(secret).name == "app"
    assert store.digest_of(info.id) == digest
    revoked = dataclasses.replace(info, revoked_at="2026-11-26T00:00:00+00:00")
    assert store.restore(revoked, digest) is True
    with pytest.raises(Unauthenticated):
        store.authenticate(secret)
    assert [t.revoked_at for t in store.list()] == ["2026-11-26T00:00:00+00:00"]
