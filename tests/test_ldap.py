"""LDAP authentication against a real OpenLDAP slapd (tests/ldap_server.py), plus the pure parts.

The directory: alice in ml-operators (operator); bob in ml-viewers and ml-approvers (approver,
the higher); carol only in ml-interns (not mapped: refused); "o'brien,x*(" in ml-viewers, whose
uid needs DN and filter escaping; administrator in ml-admins. Tests that stop the server or
change passwords get a slapd of their own; the others share one for the module, and the TLS
tests one with a certificate from its own CA. "Before contacting the server" is shown by a URL
where nothing listens: any contact would raise LdapUnavailable instead of Unauthenticated.
The cache's expiry runs on a fake clock.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from conftest import CREDIT_RISK_FEATURES, copy_credit_risk, http_request, start_server
from ldap_server import GROUPS_DN, Group, Slapd, User, find_slapd, free_port

from gateway.config import ConfigError
from gateway.errors import ErrorKind
from gateway.governance.identity import Basic, Unauthenticated, parse_authorization
from gateway.governance.ldap import (
    MAX_USERNAME_CHARS,
    REFUSED,
    LdapAuthenticator,
    LdapConfig,
    LdapUnavailable,
)
from gateway.governance.rbac import Principal, Role

ALICE = User("alice", "alice-secret")
BOB = User("bob", "bob-secret")
CAROL = User("carol", "carol-secret")
# the DN is escaped by hand here (RFC 4514 "\,"), independently of the code under test
OBRIEN = User("o'brien,x*(", "obrien-secret", rdn_value="o'brien\\,x*(")
ADMINISTRATOR = User("administrator", "administrator-secret")
USERS = (ALICE, BOB, CAROL, OBRIEN, ADMINISTRATOR)
GROUPS = (
    Group("ml-operators", (ALICE,)),
    Group("ml-viewers", (BOB, OBRIEN)),
    Group("ml-approvers", (BOB,)),
    Group("ml-interns", (CAROL,)),
    Group("ml-admins", (ADMINISTRATOR,)),
)
GROUP_ROLES = {
    "ml-operators": "operator",
    "ml-viewers": "viewer",
    "ml-approvers": "approver",
    "ml-admins": "admin",
}


def ldap_config(url: str, **overrides: object) -> LdapConfig:
    fields = {
        "url": url,
        "user_dn_template": "uid={username},ou=people,dc=modelgate,dc=test",
        "group_search_base": GROUPS_DN,
        "group_filter": "(&(objectClass=groupOfNames)(member={user_dn}))",
        "group_roles": GROUP_ROLES,
        "timeout_s": 5.0,
    }
    fields.update(overrides)
    return LdapConfig(**fields)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def require_slapd() -> None:
    """Skip without slapd, unless MODELGATE_REQUIRE_SLAPD=1 (CI sets it: a broken install
    must fail, not skip)."""
    if find_slapd() is None:
        message = "OpenLDAP slapd is not installed: run tests/install-system-deps.sh"
        if os.environ.get("MODELGATE_REQUIRE_SLAPD") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def directory() -> Iterator[Slapd]:
    """One slapd for the tests that neither stop it nor change it."""
    require_slapd()
    with Slapd(USERS, GROUPS) as server:
        yield server


@pytest.fixture
def own_directory() -> Iterator[Slapd]:
    """A slapd of the test's own, which it may stop or modify."""
    require_slapd()
    with Slapd(USERS, GROUPS) as server:
        yield server


@pytest.fixture
def unreachable_url() -> str:
    """A loopback port with nothing listening: any contact fails at once."""
    return f"ldap://127.0.0.1:{free_port()}"


@pytest.fixture
def auth(directory: Slapd) -> LdapAuthenticator:
    return LdapAuthenticator(ldap_config(directory.url))


# --- successes ---------------------------------------------------------------------------------


def test_user_gets_the_role_of_its_group(auth: LdapAuthenticator) -> None:
    principal = auth.authenticate_basic("alice", ALICE.password)
    assert principal == Principal(name="alice", role=Role.OPERATOR, scopes=frozenset(), kind="ldap")


def test_the_highest_mapped_role_wins(auth: LdapAuthenticator) -> None:
    assert auth.authenticate_basic("bob", BOB.password).role == Role.APPROVER


def test_special_characters_in_the_uid_are_escaped(auth: LdapAuthenticator) -> None:
    # unescaped, the bind DN would be invalid (',' splits the RDN) and the group filter would not
    # parse ('(' and '*'): only correct escaping in both places finds the user's group
    principal = auth.authenticate_basic(OBRIEN.uid, OBRIEN.password)
    assert (principal.name, principal.role) == (OBRIEN.uid, Role.VIEWER)


def test_name_is_the_uid_as_stored(auth: LdapAuthenticator) -> None:
    # uid matches case-insensitively: "ALICE" is alice, and must be one principal with her
    principal = auth.authenticate_basic("ALICE", ALICE.password)
    assert (principal.name, principal.role) == ("alice", Role.OPERATOR)


def test_groups_map_by_dn_or_cn_ignoring_case(directory: Slapd) -> None:
    roles = {"CN=ML-Operators, OU=groups, DC=modelgate, DC=test": "admin", "ML-VIEWERS": "viewer"}
    auth = LdapAuthenticator(ldap_config(directory.url, group_roles=roles))
    assert auth.authenticate_basic("alice", ALICE.password).role == Role.ADMIN
    assert auth.authenticate_basic("bob", BOB.password).role == Role.VIEWER


def test_default_role_admits_users_without_a_mapped_group(directory: Slapd) -> None:
    auth = LdapAuthenticator(ldap_config(directory.url, default_role="viewer"))
    assert auth.authenticate_basic("carol", CAROL.password).role == Role.VIEWER
    assert auth.authenticate_basic("alice", ALICE.password).role == Role.OPERATOR


def test_concurrent_callers(auth: LdapAuthenticator) -> None:
    users = [ALICE, BOB, OBRIEN] * 8
    with ThreadPoolExecutor(max_workers=8) as pool:
        roles = list(pool.map(lambda u: auth.authenticate_basic(u.uid, u.password).role, users))
    assert roles == [Role.OPERATOR, Role.APPROVER, Role.VIEWER] * 8


# --- refusals ----------------------------------------------------------------------------------


def refusal(auth: LdapAuthenticator, username: str, password: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        auth.authenticate_basic(username, password)
    assert caught.value.kind is ErrorKind.UNAUTHENTICATED
    return caught.value


def test_refusals_do_not_say_what_was_wrong(auth: LdapAuthenticator) -> None:
    wrong_password = refusal(auth, "alice", "not-her-password")
    unknown_user = refusal(auth, "mallory", "whatever")
    no_mapped_group = refusal(auth, "carol", CAROL.password)  # right password, no role
    assert wrong_password.message == unknown_user.message == no_mapped_group.message == REFUSED


def test_wrong_password_of_another_user_is_refused(auth: LdapAuthenticator) -> None:
    refusal(auth, "alice", BOB.password)


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("*", ALICE.password),
        ("alice)(uid=*", ALICE.password),
        ("alice)(|(uid=*", ALICE.password),
        ("*)(member=*", ALICE.password),
        ("admin*", ADMINISTRATOR.password),
        ("a*", ALICE.password),
        ("alice,ou=people,dc=modelgate,dc=test", ALICE.password),
        ("alice+cn=alice", ALICE.password),
        ("o'brien", OBRIEN.password),  # the prefix of a real uid holding a ','
    ],
)
def test_injection_attempts_are_refused(
    auth: LdapAuthenticator, username: str, password: str
) -> None:
    refusal(auth, username, password)


def test_empty_password_is_refused_by_a_real_server_too(auth: LdapAuthenticator) -> None:
    refusal(auth, "alice", "")


@pytest.mark.parametrize(
    "username",
    [
        "",
        "x" * (MAX_USERNAME_CHARS + 1),
        " alice",
        "alice ",
        "alice\x00",
        "ali\nce",
        "alice\u200b",  # zero-width space: a format character
        "alice\udc80",  # a lone surrogate (what surrogateescape makes of a bad byte)
    ],
)
def test_bad_usernames_are_refused_before_contacting_the_server(
    unreachable_url: str, username: str
) -> None:
    # nothing listens at unreachable_url: any contact would raise LdapUnavailable instead
    refusal(LdapAuthenticator(ldap_config(unreachable_url)), username, "some-password")


def test_empty_password_is_refused_before_contacting_the_server(unreachable_url: str) -> None:
    # A simple bind with a DN and an empty password is an unauthenticated bind (RFC 4513
    # 5.1.2): a server may accept it. It must never be sent.
    auth = LdapAuthenticator(ldap_config(unreachable_url))
    refusal(auth, "alice", "")
    with pytest.raises(LdapUnavailable):  # the same call with a password does contact it
        auth.authenticate_basic("alice", "x")


@pytest.mark.parametrize("password", ["p" * 5000, "pass\udc80word"])
def test_odd_passwords_are_refused_before_contacting_the_server(
    unreachable_url: str, password: str
) -> None:
    refusal(LdapAuthenticator(ldap_config(unreachable_url)), "alice", password)


# --- unavailability ----------------------------------------------------------------------------


def test_unreachable_server_is_unavailable(unreachable_url: str) -> None:
    auth = LdapAuthenticator(ldap_config(unreachable_url))
    with pytest.raises(LdapUnavailable) as caught:
        auth.authenticate_basic("alice", ALICE.password)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    assert "127.0.0.1" not in caught.value.message  # the reason is for the log only
    assert caught.value.reason


def test_server_that_never_answers_times_out() -> None:
    # a listening socket that never accepts: the kernel completes the TCP handshake, the bind
    # request is sent, no response ever comes
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        auth = LdapAuthenticator(ldap_config(url, timeout_s=0.3))
        started = time.monotonic()
        with pytest.raises(LdapUnavailable):
            auth.authenticate_basic("alice", ALICE.password)
        assert time.monotonic() - started < 3.0


def test_stopped_server_is_unavailable(own_directory: Slapd) -> None:
    auth = LdapAuthenticator(ldap_config(own_directory.url, cache_ttl_s=0))
    assert auth.authenticate_basic("alice", ALICE.password).role == Role.OPERATOR
    own_directory.stop()
    with pytest.raises(LdapUnavailable) as caught:  # cache off: asks the server again
        auth.authenticate_basic("alice", ALICE.password)
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    own_directory.start()
    assert auth.authenticate_basic("alice", ALICE.password).role == Role.OPERATOR


# --- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_directory() -> Iterator[Slapd]:
    """A slapd with a certificate for 127.0.0.1 from its own CA: StartTLS on `url`, and
    `ldaps_url`."""
    require_slapd()
    with Slapd(USERS, GROUPS, tls=True) as server:
        yield server


def test_starttls_with_the_directory_ca(tls_directory: Slapd) -> None:
    config = ldap_config(tls_directory.url, use_starttls=True, ca_file=str(tls_directory.ca_file))
    principal = LdapAuthenticator(config).authenticate_basic("alice", ALICE.password)
    assert principal.role == Role.OPERATOR


def test_ldaps_with_the_directory_ca(tls_directory: Slapd) -> None:
    config = ldap_config(tls_directory.ldaps_url, ca_file=str(tls_directory.ca_file))
    principal = LdapAuthenticator(config).authenticate_basic("alice", ALICE.password)
    assert principal.role == Role.OPERATOR


@pytest.mark.parametrize("ldaps", [False, True], ids=["starttls", "ldaps"])
def test_tls_refuses_a_certificate_from_an_untrusted_ca(tls_directory: Slapd, ldaps: bool) -> None:
    # no ca_file: the system's CAs, which never signed the test CA. ldap3 alone would not check.
    if ldaps:
        config = ldap_config(tls_directory.ldaps_url)
    else:
        config = ldap_config(tls_directory.url, use_starttls=True)
    with pytest.raises(LdapUnavailable) as caught:
        LdapAuthenticator(config).authenticate_basic("alice", ALICE.password)
    assert "certificate" in caught.value.reason.lower()


def test_tls_refuses_a_certificate_for_another_host(tls_directory: Slapd) -> None:
    # a trusted certificate, but for 127.0.0.1 and localhost, not for 127.0.0.2
    config = ldap_config(tls_directory.unnamed_ldaps_url, ca_file=str(tls_directory.ca_file))
    with pytest.raises(LdapUnavailable) as caught:
        LdapAuthenticator(config).authenticate_basic("alice", ALICE.password)
    assert "match" in caught.value.reason.lower()


def test_starttls_against_a_server_without_tls_is_unavailable(directory: Slapd) -> None:
    config = ldap_config(directory.url, use_starttls=True)
    with pytest.raises(LdapUnavailable):
        LdapAuthenticator(config).authenticate_basic("alice", ALICE.password)


# --- the cache ---------------------------------------------------------------------------------


def test_success_is_cached_for_the_ttl(own_directory: Slapd) -> None:
    clock = FakeClock()
    auth = LdapAuthenticator(ldap_config(own_directory.url, cache_ttl_s=60), clock=clock)
    first = auth.authenticate_basic("bob", BOB.password)
    own_directory.stop()
    clock.now += 59.9
    assert auth.authenticate_basic("bob", BOB.password) == first  # served without the server
    with pytest.raises(LdapUnavailable):  # another password is not in the cache
        auth.authenticate_basic("bob", "another-password")
    with pytest.raises(LdapUnavailable):  # nor another user
        auth.authenticate_basic("alice", ALICE.password)
    clock.now += 0.1  # 60 s: expired
    with pytest.raises(LdapUnavailable):
        auth.authenticate_basic("bob", BOB.password)


def test_cache_is_keyed_by_the_password(own_directory: Slapd) -> None:
    clock = FakeClock()
    auth = LdapAuthenticator(ldap_config(own_directory.url, cache_ttl_s=60), clock=clock)
    auth.authenticate_basic("alice", ALICE.password)
    own_directory.set_password(ALICE, "alice-new-secret")
    # the new password is not in the cache: the server accepts it
    assert auth.authenticate_basic("alice", "alice-new-secret").role == Role.OPERATOR
    # the old one is still served from the cache until it expires (the documented hazard)...
    assert auth.authenticate_basic("alice", ALICE.password).role == Role.OPERATOR
    clock.now += 60
    # ...and then refused by the server
    refusal(auth, "alice", ALICE.password)


def test_failures_are_never_cached(own_directory: Slapd) -> None:
    auth = LdapAuthenticator(ldap_config(own_directory.url, cache_ttl_s=60), clock=FakeClock())
    refusal(auth, "alice", "next-password")
    own_directory.set_password(ALICE, "next-password")
    assert auth.authenticate_basic("alice", "next-password").role == Role.OPERATOR


def test_concurrent_callers_share_the_cache(own_directory: Slapd) -> None:
    auth = LdapAuthenticator(ldap_config(own_directory.url), clock=FakeClock())
    auth.authenticate_basic("alice", ALICE.password)
    own_directory.stop()
    barrier = threading.Barrier(8)

    def call(_: int) -> Role:
        barrier.wait()
        return auth.authenticate_basic("alice", ALICE.password).role

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(call, range(8))) == {Role.OPERATOR}


# --- Basic credentials, as identity.parse_authorization reads them for the LDAP source --------


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic(b"alice:secret"), ("alice", "secret")),
        (basic(b"alice:pa:ss:word"), ("alice", "pa:ss:word")),
        (basic(b"alice:"), ("alice", "")),  # parsed; authenticate_basic refuses it
        (basic("o'brien,x*(:p\u00e4ss".encode()), ("o'brien,x*(", "p\u00e4ss")),
        ("bAsIc " + basic(b"a:b").split()[1], ("a", "b")),
        ("  Basic   " + basic(b"a:b").split()[1] + "  ", ("a", "b")),
    ],
)
def test_basic_credentials_are_parsed(header: str, expected: tuple[str, str]) -> None:
    assert parse_authorization(header) == Basic(*expected)


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic ",
        "Basic !!!notbase64",
        "Basic YWxpY2U",  # bad padding
        basic(b"no-colon"),
        basic(b"\xff\xfe:x"),  # not UTF-8
    ],
)
def test_malformed_basic_credentials_are_refused(header: str) -> None:
    with pytest.raises(Unauthenticated):
        parse_authorization(header)


# --- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"url": "http://ldap.example.org"}, "ldap.url"),
        ({"url": "ldap://"}, "ldap.url"),
        ({"url": "ldap://host:notaport"}, "ldap.url"),
        ({"url": "ldap://host/dc=example"}, "ldap.url"),
        ({"url": "ldaps://host", "use_starttls": True}, "use_starttls"),
        ({"user_dn_template": "uid=alice,dc=test"}, "{username}"),
        ({"user_dn_template": "uid={username},{base}"}, "user_dn_template"),
        ({"group_filter": "(objectClass=groupOfNames)"}, "group_filter"),
        ({"group_filter": "member={user_dn}"}, "group_filter"),
        ({"group_roles": {"ml-operators": "superuser"}}, "group_roles.ml-operators"),
        ({"default_role": "root"}, "default_role"),
        ({"cache_ttl_s": -1}, "cache_ttl_s"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
    ],
)
def test_invalid_config_is_refused(overrides: dict, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint.replace("{", r"\{").replace("}", r"\}")):
        ldap_config(**{"url": "ldap://127.0.0.1:389", **overrides})


@pytest.mark.parametrize(
    "url",
    [
        "ldap://127.0.0.1:389",
        "ldap://127.0.0.1:389/",
        "LDAPS://ldap.example.org",
        "ldap://[::1]:1389",
    ],
)
def test_valid_urls(url: str) -> None:
    LdapAuthenticator(ldap_config(url))


# ---- through a gateway: HTTP Basic and gRPC `authorization: Basic` ------------------------


def test_a_gateway_authenticates_directory_users_on_both_transports(
    directory: Slapd, tmp_path
) -> None:
    roles = "".join(f'"{group}" = "{role}"\n' for group, role in GROUP_ROLES.items())
    config = (
        "[auth]\ninference = true\n[auth.ldap]\n"
        f'url = "{directory.url}"\n'
        'user_dn_template = "uid={username},ou=people,dc=modelgate,dc=test"\n'
        f'group_search_base = "{GROUPS_DN}"\n'
        "[auth.ldap.group_roles]\n" + roles
    )
    copy_credit_risk(tmp_path / "repository")
    rows = np.random.default_rng(9).random((1, CREDIT_RISK_FEATURES), dtype=np.float32)
    body = {
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [1, 20], "data": rows[0].tolist()}
        ]
    }

    def basic(user: User, password: str | None = None) -> str:
        pair = f"{user.uid}:{user.password if password is None else password}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    with start_server(tmp_path / "repository", config) as server:
        url = f"{server.http_url}/v2/models/credit_risk/infer"

        def status(authorization: str) -> int:
            return http_request("POST", url, body, headers={"Authorization": authorization}).status

        assert status(basic(ALICE)) == 200  # operator: may infer
        assert status(basic(ALICE, "wrong")) == 401
        assert status(basic(CAROL)) == 401  # in no mapped group
        assert status(basic(OBRIEN)) == 403  # a viewer may not infer

        client = grpcclient.InferenceServerClient(server.grpc_address)
        features = grpcclient.InferInput("features", [1, CREDIT_RISK_FEATURES], "FP32")
        features.set_data_from_numpy(rows)
        client.infer("credit_risk", [features], headers={"authorization": basic(BOB)})
        with pytest.raises(grpcclient.InferenceServerException, match="UNAUTHENTICATED"):
            client.infer("credit_risk", [features], headers={"authorization": basic(BOB, "x")})
