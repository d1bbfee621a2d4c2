"""LDAP authentication: HTTP Basic credentials checked by a simple bind as the user.

There is no service account. `LdapAuthenticator.authenticate_basic` binds to the directory with
the user's own DN and password, then, on that same connection, searches the groups the user is a
member of; `LdapConfig.group_roles` maps group names to roles and the highest mapped role wins.

Injection: the username is escaped for a DN value (RFC 4514) before it enters
`user_dn_template`, and the resulting DN (and the username) is escaped for a filter value
(RFC 4515) before it enters `group_filter`. Usernames that are empty, too long, padded with
spaces or hold control characters are refused before any escaping.

Refusals: an empty password is refused before the server is contacted (RFC 4513 5.1.2: a simple
bind with a DN and an empty password is an *unauthenticated* bind, which some servers accept).
Wrong credentials, an unknown user and a user without a mapped group all raise the same
`Unauthenticated` message, so a client cannot tell which part was wrong; the reason is logged.
A server that cannot be reached, or that fails mid-way, raises `LdapUnavailable` (UNAVAILABLE:
retryable), never `Unauthenticated`.

Cache: successes only, for `cache_ttl_s`, keyed by (username, keyed SHA-256 of the password): a
different password always goes to the server, and a failure is never remembered. The hazard is
the usual one: a password changed or a group membership revoked in the directory keeps working
with the old answer until the entry expires.

Name: the principal is named by the naming attribute's value as stored in the directory (read
from the user's own entry after the bind), so ``ALICE`` and ``alice``, one user to a
case-insensitive directory, are one principal in the journal and in four-eyes checks.

TLS: ``ldaps://`` or `use_starttls` verify the server's certificate chain (against `ca_file`, or
the system's CAs) and its host name, with the standard library's defaults; ldap3's own default
verifies nothing. With plain ``ldap://`` the password crosses the network in clear text.

Threads: `authenticate_basic` blocks on the network: a connect, maybe a TLS handshake, then
three requests (bind, read of the user's entry, group search), each bounded by `timeout_s`. The
caller runs it in a worker thread. The cache is the only state shared between those threads,
under a lock; each call opens and closes its own connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import ssl
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ldap3 import BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from gateway.config import ConfigError
from gateway.errors import ErrorKind, GatewayError, InvalidInput
from gateway.governance.identity import Unauthenticated
from gateway.governance.rbac import Principal, Role

logger = logging.getLogger(__name__)

MAX_USERNAME_CHARS = 256
MAX_PASSWORD_BYTES = 1024
MAX_CACHE_ENTRIES = 10_000
MAX_GROUPS = 1000  # size limit of the group search

# The one message of every credential refusal: it must not say which part was wrong.
REFUSED = "invalid credentials"

# LDAP result codes (RFC 4511 4.1.9) that mean "these credentials do not get in": the client's
# fault, not the server's. Any other failure of the bind is the server's: UNAVAILABLE.
_CREDENTIAL_RESULTS = {
    32,  # noSuchObject
    34,  # invalidDNSyntax
    48,  # inappropriateAuthentication
    49,  # invalidCredentials
    50,  # insufficientAccessRights
    53,  # unwillingToPerform (e.g. an unauthenticated bind refused)
}


class LdapUnavailable(GatewayError):
    """The directory could not be reached or failed to answer; `reason` is for the log only."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(self, reason: str) -> None:
        super().__init__("the LDAP server is unavailable")
        self.reason = reason


@dataclass(frozen=True)
class LdapConfig:
    """`[ldap]`: where the directory is and how its groups become roles.

    `user_dn_template` holds `{username}`; `group_filter` holds `{user_dn}` and/or
    `{username}`. The keys of `group_roles` are group CNs (``ml-operators``) or full DNs
    (``cn=ml-operators,ou=groups,dc=example,dc=org``), both matched case-insensitively.
    """

    url: str = "ldap://127.0.0.1:389"  # ldap:// or ldaps://
    user_dn_template: str = "uid={username},ou=people,dc=example,dc=org"
    group_search_base: str = "ou=groups,dc=example,dc=org"
    group_filter: str = "(&(objectClass=groupOfNames)(member={user_dn}))"
    group_roles: dict[str, str] = field(default_factory=dict)  # group CN or DN -> role name
    default_role: str = ""  # role of a user in no mapped group; "" refuses such users
    cache_ttl_s: float = 60.0  # how long a success is reused; 0 turns the cache off
    timeout_s: float = 5.0  # connect timeout, and the timeout of each response
    use_starttls: bool = False  # upgrade an ldap:// connection with StartTLS before the bind
    ca_file: str = ""  # PEM CA bundle for ldaps:// and StartTLS; "" uses the system's CAs

    def __post_init__(self) -> None:
        scheme = _server_url(self.url).partition("://")[0]
        if self.use_starttls and scheme == "ldaps":
            raise ConfigError("ldap.use_starttls applies to ldap:// only (ldaps:// is TLS)")
        if "{username}" not in self.user_dn_template:
            raise ConfigError("ldap.user_dn_template must contain {username}")
        if "{user_dn}" not in self.group_filter and "{username}" not in self.group_filter:
            raise ConfigError("ldap.group_filter must contain {user_dn} or {username}")
        for name, template, fields in (
            ("user_dn_template", self.user_dn_template, {"username": "x"}),
            ("group_filter", self.group_filter, {"username": "x", "user_dn": "x"}),
        ):
            try:
                template.format(**fields)
            except (KeyError, IndexError, ValueError) as error:
                raise ConfigError(f"ldap.{name}: bad placeholder {error}") from None
        if not self.group_filter.startswith("(") or not self.group_filter.endswith(")"):
            raise ConfigError("ldap.group_filter must be a parenthesised LDAP filter")
        for group, role in self.group_roles.items():
            _parse_role(f"ldap.group_roles.{group}", role)
        if self.default_role:
            _parse_role("ldap.default_role", self.default_role)
        if self.ca_file and not os.path.isfile(self.ca_file):
            raise ConfigError(f"ldap.ca_file: no such file {self.ca_file!r}")
        if self.cache_ttl_s < 0:
            raise ConfigError("ldap.cache_ttl_s must be >= 0")
        if self.timeout_s <= 0:
            raise ConfigError("ldap.timeout_s must be > 0")


def _server_url(url: str) -> str:
    """`scheme://host[:port]` of an LDAP URL (a trailing "/" allowed, nothing after it).
    Raises ConfigError."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as error:
        raise ConfigError(f"ldap.url {url!r}: {error}") from None
    if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
        raise ConfigError(f"ldap.url must be ldap://host[:port] or ldaps://..., not {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(f"ldap.url must name only the server, not {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def _parse_role(key: str, name: str) -> Role:
    try:
        return Role.parse(name)
    except InvalidInput as error:
        raise ConfigError(f"{key}: {error.message}") from None


def _normalize_dn(dn: str) -> str:
    """A DN for comparison: case folded, without the blanks around "," and "=" that people
    write in config files. Escaped characters (``\\,``) stay inside their value."""
    rdns, current, escaped = [], [], False
    for char in dn:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            rdns.append("".join(current))
            current = []
            continue
        current.append(char)
    rdns.append("".join(current))
    pairs = (rdn.partition("=") for rdn in rdns)
    return ",".join(f"{attr.strip()}={value.strip()}" for attr, _, value in pairs).casefold()


class _VerifiedTls(Tls):
    """TLS that verifies the chain and the host name with the standard library's defaults.

    ldap3's own Tls verifies nothing by default (CERT_NONE) and, when asked to, checks the name
    with `ssl.match_hostname`, removed in Python 3.12, whose fallback refuses IP addresses.
    Here `ssl.create_default_context` does both during the handshake (ldap3 calls
    `wrap_socket` for ldaps:// and for StartTLS, and turns its errors into LDAPExceptions).
    The context is built once and shared by the worker threads (SSLContext is thread-safe).
    """

    def __init__(self, host: str, ca_file: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._host = host
        self._context = ssl.create_default_context(cafile=ca_file or None)

    def wrap_socket(self, connection: Connection, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self._host,
        )


class LdapAuthenticator:
    """Authenticates Basic credentials against one LDAP directory; see the module docstring.

    `clock` (monotonic seconds) is injectable for the cache's expiry in tests.
    """

    def __init__(self, config: LdapConfig, clock: Callable[[], float] = time.monotonic) -> None:
        # per authenticator, fixed at start-up
        self.config = config
        self._clock = clock
        self._roles = {
            (_normalize_dn(group) if "=" in group else group.casefold()): Role.parse(role)
            for group, role in config.group_roles.items()
        }
        self._default_role = Role.parse(config.default_role) if config.default_role else None
        self._rdn_attr = config.user_dn_template.partition("=")[0].strip()
        self._url = _server_url(config.url)
        self._tls = None
        if self._url.startswith("ldaps://") or config.use_starttls:
            host = urllib.parse.urlsplit(self._url).hostname or ""
            self._tls = _VerifiedTls(host, config.ca_file)
        # A key of our own for the cache's password digests, so that they are useless outside
        # this process.
        self._cache_key = os.urandom(32)
        # shared by the worker threads that call authenticate_basic: guarded by _lock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, bytes], tuple[float, Principal]] = {}

    def authenticate_basic(self, username: str, password: str) -> Principal:
        """The principal of a user whose password the directory accepts. Blocks: run it in a
        worker thread.

        Returns a Principal of kind "ldap", no scopes, and the highest role mapped from the
        user's groups (or `default_role`). Its name is the username as the directory stores it
        (``Alice`` and ``alice`` are one user to a case-insensitive directory).
        Raises Unauthenticated for an empty password (before any contact with the server), an
        empty, padded, overlong or control-character username, wrong credentials, or no mapped
        group; LdapUnavailable when the server cannot be reached or fails.
        """
        self._check_shape(username, password)
        key = (username, hmac.digest(self._cache_key, password.encode(), hashlib.sha256))
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                if cached[0] > now:
                    return cached[1]
                del self._cache[key]
        try:
            principal = self._authenticate(username, password)
        except LdapUnavailable as error:
            logger.warning("LDAP: %s unavailable: %s", self.config.url, error.reason)
            raise
        if self.config.cache_ttl_s > 0:
            with self._lock:
                self._store(key, principal, now + self.config.cache_ttl_s)
        return principal

    def _check_shape(self, username: str, password: str) -> None:
        if not password:
            self._refuse(username, "empty password")
        try:
            if len(password.encode()) > MAX_PASSWORD_BYTES:
                self._refuse(username, "password too long")
        except UnicodeEncodeError:  # lone surrogates: not text any server could check
            self._refuse(username, "password is not valid Unicode")
        if not username:
            self._refuse(username, "empty username")
        if len(username) > MAX_USERNAME_CHARS:
            self._refuse(username[:32], "username too long")
        if username != username.strip():
            self._refuse(username, "username with leading or trailing whitespace")
        if any(unicodedata.category(char) in ("Cc", "Cf", "Cs") for char in username):
            self._refuse(username, "username with control characters or lone surrogates")

    def _refuse(self, username: str, reason: str) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info("LDAP: refused %r: %s", username, reason)
        raise Unauthenticated("rejected", REFUSED)

    def _store(self, key: tuple[str, bytes], principal: Principal, expires: float) -> None:
        # under _lock
        if len(self._cache) >= MAX_CACHE_ENTRIES:
            now = self._clock()
            for stale in [k for k, (until, _) in self._cache.items() if until <= now]:
                del self._cache[stale]
            while len(self._cache) >= MAX_CACHE_ENTRIES:  # oldest first: dicts keep order
                del self._cache[next(iter(self._cache))]
        self._cache[key] = (expires, principal)

    def _authenticate(self, username: str, password: str) -> Principal:
        user_dn = self.config.user_dn_template.format(username=escape_rdn(username))
        group_filter = self.config.group_filter.format(
            user_dn=escape_filter_chars(user_dn), username=escape_filter_chars(username)
        )
        # A Server per call: ldap3's Server remembers failed addresses and refuses them for a
        # while ("invalid server address"), which would outlast a restarted directory and is
        # state shared between the worker threads.
        server = Server(
            self._url, get_info=NONE, connect_timeout=self.config.timeout_s, tls=self._tls
        )
        connection = Connection(
            server,
            user=user_dn,
            password=password,
            authentication=SIMPLE,
            raise_exceptions=False,
            auto_referrals=False,  # never send the user's password to a host a referral names
            auto_escape=False,  # escaped above, once
            read_only=True,
        )
        try:
            connection.open()  # raises when the server cannot be reached
            # ldap3's receive_timeout takes whole seconds only (struct.pack('LL')): bound every
            # read on the socket itself instead, as connect_timeout bounded the connect.
            connection.socket.settimeout(self.config.timeout_s)
            if self.config.use_starttls and not connection.start_tls():
                raise LdapUnavailable(f"StartTLS failed: {connection.result}")
            if not connection.bind():
                code = connection.result.get("result") if connection.result else None
                if code in _CREDENTIAL_RESULTS:
                    self._refuse(username, f"bind refused ({connection.result['description']})")
                raise LdapUnavailable(f"bind failed: {connection.result}")
            name = self._stored_name(connection, user_dn, username)
            connection.search(
                self.config.group_search_base,
                group_filter,
                search_scope=SUBTREE,
                attributes=["cn"],
                size_limit=MAX_GROUPS,
                time_limit=max(1, int(self.config.timeout_s)),
            )
            if connection.result.get("result") != 0:  # a wrong base or ACL, a size limit...
                raise LdapUnavailable(f"group search failed: {connection.result}")
            role = self._role(connection.response or ())
        except (LDAPException, OSError) as error:  # OSError: socket and TLS errors
            raise LdapUnavailable(f"{type(error).__name__}: {error}") from None
        finally:
            with contextlib.suppress(LDAPException):
                connection.unbind()
        if role is None:
            self._refuse(username, "no mapped group")
        return Principal(name=name, role=role, scopes=frozenset(), kind="ldap")

    def _stored_name(self, connection: Connection, user_dn: str, username: str) -> str:
        """The naming attribute's value as stored, so that case variants are one principal."""
        connection.search(
            user_dn, "(objectClass=*)", search_scope=BASE, attributes=[self._rdn_attr]
        )
        for entry in connection.response or ():
            if entry.get("type") != "searchResEntry":
                continue
            values = entry.get("attributes", {}).get(self._rdn_attr, [])
            for value in [values] if isinstance(values, str) else values:
                if isinstance(value, str) and value.casefold() == username.casefold():
                    return value
        return username  # the user may not read its own entry: keep the name as given

    def _role(self, entries: Iterable[dict]) -> Role | None:
        roles = []
        for entry in entries:
            if entry.get("type") != "searchResEntry":
                continue  # a search reference: not followed
            role = self._roles.get(_normalize_dn(entry["dn"]))
            if role is not None:
                roles.append(role)
            cns = entry.get("attributes", {}).get("cn", [])
            for cn in [cns] if isinstance(cns, str) else cns:
                role = self._roles.get(cn.casefold())
                if role is not None:
                    roles.append(role)
        if roles:
            return max(roles)
        return self._default_role
