"""A real OpenLDAP `slapd` for the tests, run as a user process on a free 127.0.0.1 port.

`Slapd(users, groups).start()` writes a slapd.conf (mdb backend, suffix `BASE_DN`) into a temp
dir, loads the users and groups offline with ``slapadd -f <dir>/slapd.conf -l <dir>/data.ldif``,
then runs::

    slapd -f <dir>/slapd.conf -h ldap://127.0.0.1:<port>/ -d none

`-d` keeps slapd in the foreground (no fork, no detach), so the Popen is the server itself and
SIGTERM stops it; level `none` logs only start, stop and errors (set MODELGATE_SLAPD_DEBUG=stats
to see every operation). The log goes to a file in the temp dir and into any error raised here.
Readiness is a bind as the root DN, retried until a deadline; a port taken between choosing and
binding it is retried on another port. `stop()` sends SIGTERM and waits for the exit; `start()`
runs the same directory again. With `tls=True` slapd also gets a certificate from a CA of its
own (`ca_file`) and listens on `ldaps_url` and `unnamed_ldaps_url` as well.

The binaries come from Debian's `slapd` package (`tests/install-system-deps.sh`); `find_slapd()`
is None without them.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BASE_DN = "dc=modelgate,dc=test"
PEOPLE_DN = f"ou=people,{BASE_DN}"
GROUPS_DN = f"ou=groups,{BASE_DN}"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PASSWORD = "root-secret"

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3
# slapd 2.5's main thread waits for its listener thread to report ready; if SIGTERM comes
# before the main thread has woken (a loaded machine, a test that stops slapd right after
# starting it), it logs this, returns 1 without joining the listener threads, and may even
# crash while tearing down beside them (daemon.c, slapd_daemon). The stop is still complete
# and mdb is crash-safe, so this exit is accepted as a stop.
STARTUP_RACE = "listener initialization failed"
# slapd 2.5.13 has also been seen (CI, once in many runs) to die of SIGSEGV in its exit-time
# cleanup after it logged this line: the shutdown itself was complete, so that is a stop too.
# A crash before this line is still a failure.
CLEAN_STOP = "slapd stopped."

SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIRS = (Path("/usr/lib/ldap"), Path("/usr/lib64/openldap"), Path("/usr/lib/openldap"))


def find_slapd() -> tuple[str, str] | None:
    """(slapd, slapadd) paths, or None when OpenLDAP's server is not installed. /usr/sbin is
    searched explicitly: it is not on an ordinary user's PATH."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    slapd = shutil.which("slapd", path=path)
    slapadd = shutil.which("slapadd", path=path)
    if slapd is None or slapadd is None or not (SCHEMA_DIR / "core.schema").is_file():
        return None
    return slapd, slapadd


def ssha(password: str, salt: bytes | None = None) -> str:
    """An RFC 2307 `{SSHA}` userPassword: SHA-1 of password || salt, then the salt."""
    salt = os.urandom(8) if salt is None else salt
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


@dataclass(frozen=True)
class User:
    uid: str
    password: str
    # the RDN value as written in a DN (RFC 4514-escaped by hand in the tests, on purpose:
    # not with the escaping under test); defaults to `uid`
    rdn_value: str = ""

    @property
    def dn(self) -> str:
        return f"uid={self.rdn_value or self.uid},{PEOPLE_DN}"


@dataclass(frozen=True)
class Group:
    cn: str
    members: tuple[User, ...]

    @property
    def dn(self) -> str:
        return f"cn={self.cn},{GROUPS_DN}"


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def ldif(users: Iterable[User], groups: Iterable[Group]) -> str:
    """The directory: base, ou=people, ou=groups, the users and the groups. Values are base64
    (`attr:: ...`) so that special characters need no LDIF escaping."""
    blocks = [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\n"
        "dc: modelgate\no: Modelgate\n",
        f"dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n",
    ]
    for user in users:
        blocks.append(
            f"dn:: {_b64(user.dn)}\nobjectClass: inetOrgPerson\nuid:: {_b64(user.uid)}\n"
            f"cn:: {_b64(user.uid)}\nsn:: {_b64(user.uid)}\n"
            f"userPassword:: {_b64(ssha(user.password))}\n"
        )
    for group in groups:
        members = "".join(f"member:: {_b64(member.dn)}\n" for member in group.members)
        blocks.append(f"dn: {group.dn}\nobjectClass: groupOfNames\ncn: {group.cn}\n{members}")
    return "\n".join(blocks)


def _slapd_conf(directory: Path) -> str:
    module = ""
    for folder in MODULE_DIRS:
        if any(folder.glob("back_mdb.*")):
            module = f"modulepath {folder}\nmoduleload back_mdb\n"
            break
    # Users may read the directory once bound; anonymous clients may only bind. userPassword is
    # readable by nobody (auth only). 16 MiB is plenty of mdb map for a test directory.
    return f"""\
include {SCHEMA_DIR}/core.schema
include {SCHEMA_DIR}/cosine.schema
include {SCHEMA_DIR}/inetorgperson.schema
pidfile {directory}/slapd.pid
argsfile {directory}/slapd.args
{module}
database mdb
maxsize 16777216
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {ssha(ROOT_PASSWORD)}
directory {directory}/db
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
"""


def write_certificates(directory: Path) -> str:
    """A CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost that it signed
    (`server.pem`, `server.key`), valid for a day; returns slapd.conf's TLS directives."""
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer, extensions
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate(
        "modelgate test CA",
        ca_key,
        "modelgate test CA",
        ca_key,
        [
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
            (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False),
        ],
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = certificate(
        "127.0.0.1",
        key,
        "modelgate test CA",
        ca_key,
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.SubjectAlternativeName(names), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ],
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(server.public_bytes(pem))
    (directory / "server.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return (
        f"TLSCACertificateFile {directory}/ca.pem\n"
        f"TLSCertificateFile {directory}/server.pem\n"
        f"TLSCertificateKeyFile {directory}/server.key\n"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Slapd:
    """One slapd process over its own temp dir; a context manager, or `start()` / `stop()`."""

    def __init__(
        self, users: Iterable[User], groups: Iterable[Group], *, tls: bool = False
    ) -> None:
        binaries = find_slapd()
        if binaries is None:
            raise RuntimeError("slapd is not installed (run tests/install-system-deps.sh)")
        self._slapd, self._slapadd = binaries
        self._ldif = ldif(users, groups)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.directory = Path()
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        # with tls: StartTLS on `url`, TLS from the start on `ldaps_url`, a certificate for
        # 127.0.0.1 and localhost signed by the CA in `ca_file`
        self.tls = tls
        self.ldaps_port = 0
        self.ca_file = Path()

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def unnamed_ldaps_url(self) -> str:
        """The same ldaps listener on an address the certificate does not name (all of
        127.0.0.0/8 is loopback on Linux)."""
        return f"ldaps://127.0.0.2:{self.ldaps_port}"

    def __enter__(self) -> Slapd:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create the directory (first call only) and run slapd until it answers a bind."""
        if self.process is not None:
            raise RuntimeError("slapd is already running")
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="modelgate-slapd-")
            self.directory = Path(self._tmp.name)
            (self.directory / "db").mkdir()
            conf = self.directory / "slapd.conf"
            tls_conf = ""
            if self.tls:
                self.ca_file = self.directory / "ca.pem"
                tls_conf = write_certificates(self.directory)
            conf.write_text(tls_conf + _slapd_conf(self.directory))
            (self.directory / "data.ldif").write_text(self._ldif)
            self._run([self._slapadd, "-f", str(conf), "-l", str(self.directory / "data.ldif")])
            self._choose_ports()
        for _ in range(PORT_ATTEMPTS):
            if self._launch():
                return
            self._choose_ports()  # another process took ours: choose again
        raise RuntimeError(f"slapd could not bind a port: {self._log()}")

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit; the data stays, `start()` runs it again."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise RuntimeError(f"slapd ignored SIGTERM: {self._log()}") from None
        log = self._log()
        stopped = STARTUP_RACE in log or log.rstrip().endswith(CLEAN_STOP)
        if process.returncode != 0 and not stopped:
            raise RuntimeError(f"slapd exited with {process.returncode}: {log}")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def set_password(self, user: User, password: str) -> None:
        """Change a user's password, as the root DN."""
        with self._root_connection() as connection:
            if not connection.modify(
                user.dn, {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha(password)])]}
            ):
                raise RuntimeError(f"cannot set the password of {user.dn}: {connection.result}")

    def _choose_ports(self) -> None:
        self.port = free_port()
        if self.tls:
            self.ldaps_port = free_port()

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.strip()}")

    def _log(self) -> str:
        path = self.directory / "slapd.log"
        return path.read_text(errors="replace").strip() if path.exists() else ""

    def _launch(self) -> bool:
        """Run slapd on self.port and wait for a bind to succeed. False when the port was
        taken; RuntimeError for any other failure."""
        command = [
            self._slapd,
            "-f",
            str(self.directory / "slapd.conf"),
            "-h",
            f"{self.url}/ {self.ldaps_url}/ {self.unnamed_ldaps_url}/"
            if self.tls
            else f"{self.url}/",
            "-d",
            os.environ.get("MODELGATE_SLAPD_DEBUG", "none"),
        ]
        with open(self.directory / "slapd.log", "wb") as log:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            return self._wait_ready(self.process)
        except BaseException:
            if self.process is not None:  # never leave a slapd behind
                self.process.kill()
                self.process.wait()
                self.process = None
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                self.process = None
                log_text = self._log()
                if "errno=98" in log_text or "Address already in use" in log_text:
                    return False
                raise RuntimeError(f"slapd exited at start-up: {log_text}")
            if self._answers():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"slapd not ready in {START_TIMEOUT_S} s: {self._log()}")
            # a short poll, bounded by the deadline; wait() also notices an early exit
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(min(0.02, remaining))

    def _answers(self) -> bool:
        try:
            with self._root_connection(timeout_s=1):
                return True
        except ldap3.core.exceptions.LDAPException:
            return False

    def _root_connection(self, timeout_s: int = 5) -> ldap3.Connection:
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=timeout_s)
        return ldap3.Connection(
            server,
            user=ROOT_DN,
            password=ROOT_PASSWORD,
            auto_bind=ldap3.AUTO_BIND_NO_TLS,
            receive_timeout=timeout_s,
            raise_exceptions=True,
        )
