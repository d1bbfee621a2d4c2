"""Alert channels and the dispatcher against real servers on 127.0.0.1: an aiosmtpd SMTP server
(plain, and STARTTLS + AUTH with a self-signed certificate) and aiohttp receivers standing in
for Slack, PagerDuty and webhooks. Payloads are asserted exactly; waits are on events, each
with a deadline."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import hashlib
import hmac
import ipaddress
import json
import random
import socket
import ssl
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.monitoring.alert_config import parse_alerts
from gateway.monitoring.alerting import Alerting
from gateway.monitoring.alerts import Alert, AlertEngine, Rule, Sample, Severity
from gateway.monitoring.channels import (
    Channel,
    DeliveryError,
    EmailChannel,
    EmailSettings,
    PagerDutyChannel,
    PagerDutySettings,
    SlackChannel,
    SlackSettings,
    WebhookChannel,
    WebhookSettings,
)
from gateway.monitoring.dispatch import ChannelStats, Dispatcher, JournalStats, RetryPolicy

DEADLINE_S = 10.0
T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
CREDIT = {"deployment": "credit_risk", "version": "2"}
RULE = Rule("error_rate_high", "error_rate", above=0.05, severity=Severity.CRITICAL, for_s=60.0)
DEDUP_KEY = "6bbceb7adb4cdbd9eef4875bfd565bd0"
SUMMARY = (
    "[CRITICAL] error_rate_high: error_rate = 0.12 above 0.05 (deployment=credit_risk, version=2)"
)
RESOLVED_SUMMARY = (
    "[RESOLVED] error_rate_high: error_rate = 0.02 (deployment=credit_risk, version=2)"
)
FIRING_DICT = {
    "rule": "error_rate_high",
    "metric": "error_rate",
    "above": 0.05,
    "below": None,
    "state": "firing",
    "severity": "critical",
    "value": 0.12,
    "labels": {"deployment": "credit_risk", "version": "2"},
    "started_s": T0,
    "resolved_s": None,
    "dedup_key": DEDUP_KEY,
    "summary": SUMMARY,
}
FIRING_LINES = [
    "Rule: error_rate_high (error_rate above 0.05, for 60 s)",
    "State: firing",
    "Severity: critical",
    "Value: 0.12",
    "Labels: deployment=credit_risk, version=2",
    "Started: 2023-11-14T22:13:20+00:00",
    f"Dedup key: {DEDUP_KEY}",
]
RESOLVED_LINES = [
    "Rule: error_rate_high (error_rate above 0.05, for 60 s)",
    "State: resolved",
    "Severity: critical",
    "Value: 0.02",
    "Labels: deployment=credit_risk, version=2",
    "Started: 2023-11-14T22:13:20+00:00",
    "Resolved: 2023-11-14T22:14:50+00:00",
    f"Dedup key: {DEDUP_KEY}",
]
FAST_RETRY = RetryPolicy(attempts=3, base_s=0.01, max_s=0.01)


def make_alerts(rule: Rule = RULE, labels: dict[str, str] = CREDIT) -> tuple[Alert, Alert]:
    """A firing alert (breach at T0, held for_s) and its resolve at T0 + 90, from the engine."""
    now = [T0]
    engine = AlertEngine([rule], clock=lambda: now[0])
    fired = engine.evaluate([Sample(rule.metric, 0.12, labels)])
    now[0] = T0 + rule.for_s
    [firing] = fired + engine.evaluate([Sample(rule.metric, 0.12, labels)])
    now[0] = T0 + 90
    [resolved] = engine.evaluate([Sample(rule.metric, 0.02, labels)])
    return firing, resolved


FIRING, RESOLVED = make_alerts()
WARNING = make_alerts(Rule("drift_high", "drift", above=0.1), {"deployment": "fraud"})[0]


def test_alert_json_form() -> None:
    assert FIRING.to_dict() == FIRING_DICT
    assert RESOLVED.to_dict() == {
        **FIRING_DICT,
        "state": "resolved",
        "value": 0.02,
        "resolved_s": T0 + 90,
        "summary": RESOLVED_SUMMARY,
    }


# --- servers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server recording each POST; it answers `statuses` in turn, then `status`."""

    url: str = ""
    statuses: list[int] = field(default_factory=list)
    status: int = 200
    requests: asyncio.Queue[Request] = field(default_factory=asyncio.Queue)

    async def handle(self, request: web.Request) -> web.Response:
        received = Request(request.path, dict(request.headers), await request.read())
        self.requests.put_nowait(received)
        status = self.statuses.pop(0) if self.statuses else self.status
        return web.Response(status=status, text="ok" if status < 300 else "unavailable")

    async def next(self) -> Request:
        return await asyncio.wait_for(self.requests.get(), DEADLINE_S)


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Any]]:
    """Start receivers on 127.0.0.1: `await receivers(statuses=[500])`."""
    runners: list[web.AppRunner] = []

    async def start(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        app = web.Application()
        app.router.add_post("/{tail:.*}", receiver.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        return receiver

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting is refused, and nobody else can take it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelgate test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file)


@dataclass(frozen=True)
class Delivered:
    envelope: Envelope
    tls: bool
    authenticated: bool

    def message(self) -> email.message.EmailMessage:
        content = self.envelope.original_content
        assert content is not None
        return email.message_from_bytes(content, policy=email.policy.default)  # type: ignore[return-value]


class Mailbox:
    """An aiosmtpd handler keeping what it accepts."""

    def __init__(self) -> None:
        self.delivered: asyncio.Queue[Delivered] = asyncio.Queue()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.delivered.put_nowait(
            Delivered(envelope, session.ssl is not None, bool(session.authenticated))
        )
        return "250 OK"

    async def next(self) -> Delivered:
        return await asyncio.wait_for(self.delivered.get(), DEADLINE_S)


def _check_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"alerts", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture
async def smtp_servers(certificate: Certificate) -> AsyncIterator[Callable[..., Any]]:
    """Start aiosmtpd servers in this loop on 127.0.0.1: `await smtp_servers(tls=True)` requires
    STARTTLS and AUTH (alerts / s3cret). Returns (mailbox, port)."""
    servers: list[asyncio.Server] = []

    async def start(tls: bool = False) -> tuple[Mailbox, int]:
        mailbox = Mailbox()
        options: dict[str, Any] = {}
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(certificate.cert_file, certificate.key_file)
            options = {
                "tls_context": context,
                "require_starttls": True,
                "auth_required": True,
                "authenticator": _check_login,
            }
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(mailbox, hostname="mail.test", loop=loop, **options), "127.0.0.1", 0
        )
        servers.append(server)
        return mailbox, server.sockets[0].getsockname()[1]

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def email_settings(port: int, **kwargs: Any) -> EmailSettings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "modelgate@example.com",
        "recipients": ["oncall@example.com", "ml@example.com"],
        "timeout_s": 5.0,
    }
    return EmailSettings(**{**base, **kwargs})


# --- email -----------------------------------------------------------------------------------


async def test_email_plain(smtp_servers: Callable[..., Any]) -> None:
    mailbox, port = await smtp_servers()
    channel = EmailChannel("mail", email_settings(port))
    await channel.send(FIRING)
    delivered = await mailbox.next()
    assert delivered.envelope.mail_from == "modelgate@example.com"
    assert delivered.envelope.rcpt_tos == ["oncall@example.com", "ml@example.com"]
    assert (delivered.tls, delivered.authenticated) == (False, False)
    message = delivered.message()
    assert message["From"] == "modelgate@example.com"
    assert message["To"] == "oncall@example.com, ml@example.com"
    assert message["Subject"] == SUMMARY
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content().splitlines() == FIRING_LINES

    await channel.send(RESOLVED)
    message = (await mailbox.next()).message()
    assert message["Subject"] == RESOLVED_SUMMARY
    assert message.get_content().splitlines() == RESOLVED_LINES


async def test_email_starttls_and_auth(
    smtp_servers: Callable[..., Any], certificate: Certificate
) -> None:
    mailbox, port = await smtp_servers(tls=True)
    settings = email_settings(
        port,
        starttls=True,
        username="alerts",
        password="s3cret",
        ca_file=str(certificate.cert_file),
    )
    await EmailChannel("mail", settings).send(FIRING)
    delivered = await mailbox.next()
    assert (delivered.tls, delivered.authenticated) == (True, True)
    assert delivered.message()["Subject"] == SUMMARY
    assert delivered.message().get_content().splitlines() == FIRING_LINES


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"password": "wrong"}, 535),  # bad credentials
        ({"username": "", "password": ""}, 530),  # the server requires AUTH
        ({"ca_file": ""}, None),  # the self-signed certificate is not trusted
    ],
)
async def test_email_final_errors(
    smtp_servers: Callable[..., Any],
    certificate: Certificate,
    overrides: dict[str, Any],
    status: int | None,
) -> None:
    mailbox, port = await smtp_servers(tls=True)
    settings = {
        "starttls": True,
        "username": "alerts",
        "password": "s3cret",
        "ca_file": str(certificate.cert_file),
    }
    channel = EmailChannel("mail", email_settings(port, **{**settings, **overrides}))
    with pytest.raises(DeliveryError) as caught:
        await channel.send(FIRING)
    assert (caught.value.retryable, caught.value.status, caught.value.channel) == (
        False,
        status,
        "mail",
    )
    assert mailbox.delivered.empty()


def unreachable_channels(port: int) -> list[Channel]:
    url = f"http://127.0.0.1:{port}/hook"
    return [
        EmailChannel("mail", email_settings(port)),
        SlackChannel("slack", SlackSettings(url=url)),
        PagerDutyChannel("pd", PagerDutySettings(routing_key="k", url=url)),
        WebhookChannel("hook", WebhookSettings(url=url, secret="s")),
    ]


async def test_unreachable_is_retryable(closed_port: int) -> None:
    for channel in unreachable_channels(closed_port):
        with pytest.raises(DeliveryError) as caught:
            await channel.send(FIRING)
        assert caught.value.retryable, channel.name
        assert "Connect" in caught.value.reason or "refused" in caught.value.reason
        await channel.close()


# --- HTTP channels ---------------------------------------------------------------------------


async def test_slack_payload(receivers: Callable[..., Any]) -> None:
    receiver = await receivers()
    channel = SlackChannel("slack", SlackSettings(url=receiver.url))
    try:
        await channel.send(FIRING)
        await channel.send(RESOLVED)
    finally:
        await channel.close()
    firing, resolved = await receiver.next(), await receiver.next()
    assert firing.path == "/hook"
    assert firing.headers["Content-Type"] == "application/json"
    assert firing.json() == {"text": "\n".join([SUMMARY, *FIRING_LINES])}
    assert resolved.json() == {"text": "\n".join([RESOLVED_SUMMARY, *RESOLVED_LINES])}


async def test_slack_escapes_markup(receivers: Callable[..., Any]) -> None:
    receiver = await receivers()
    alert = make_alerts(labels={"deployment": "a&b", "team": "<!channel>"})[0]
    channel = SlackChannel("slack", SlackSettings(url=receiver.url))
    try:
        await channel.send(alert)
    finally:
        await channel.close()
    text = (await receiver.next()).json()["text"]
    assert text.splitlines()[0] == (
        "[CRITICAL] error_rate_high: error_rate = 0.12 above 0.05 "
        "(deployment=a&amp;b, team=&lt;!channel&gt;)"
    )
    assert "<" not in text and ">" not in text


async def test_pagerduty_trigger_and_resolve(receivers: Callable[..., Any]) -> None:
    receiver = await receivers(status=202)
    settings = PagerDutySettings(routing_key="R0UT1NGKEY", url=receiver.url, source="gateway-1")
    channel = PagerDutyChannel("oncall", settings)
    try:
        await channel.send(FIRING)
        await channel.send(RESOLVED)
    finally:
        await channel.close()
    trigger, resolve = (await receiver.next()).json(), (await receiver.next()).json()
    assert trigger == {
        "routing_key": "R0UT1NGKEY",
        "event_action": "trigger",
        "dedup_key": DEDUP_KEY,
        "client": "Modelgate",
        "payload": {
            "summary": SUMMARY,
            "source": "gateway-1",
            "severity": "critical",
            "timestamp": "2023-11-14T22:13:20+00:00",
            "class": "error_rate",
            "component": "credit_risk",
            "custom_details": FIRING_DICT,
        },
    }
    assert resolve == {
        "routing_key": "R0UT1NGKEY",
        "event_action": "resolve",
        "dedup_key": DEDUP_KEY,
    }


async def test_pagerduty_severity_names(receivers: Callable[..., Any]) -> None:
    receiver = await receivers(status=202)
    channel = PagerDutyChannel("oncall", PagerDutySettings(routing_key="k", url=receiver.url))
    try:
        for severity in Severity:
            rule = Rule("r", "drift", above=0.1, severity=severity)
            await channel.send(make_alerts(rule, {})[0])
    finally:
        await channel.close()
    payloads = [(await receiver.next()).json()["payload"] for _ in Severity]
    assert [payload["severity"] for payload in payloads] == ["info", "warning", "critical"]
    assert all("component" not in payload for payload in payloads)  # no deployment label
    assert payloads[0]["source"] == socket.gethostname()


async def test_webhook_signature(receivers: Callable[..., Any]) -> None:
    receiver = await receivers()
    channel = WebhookChannel("hook", WebhookSettings(url=receiver.url, secret="whsec_test"))
    try:
        await channel.send(FIRING)
    finally:
        await channel.close()
    request = await receiver.next()
    assert request.json() == FIRING_DICT
    assert request.body == json.dumps(FIRING_DICT, separators=(",", ":"), sort_keys=True).encode()
    timestamp = request.headers["X-Modelgate-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60

    def signature(secret: str, body: bytes) -> str:
        mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        return "sha256=" + mac.hexdigest()

    header = request.headers["X-Modelgate-Signature"]
    assert hmac.compare_digest(header, signature("whsec_test", request.body))
    assert not hmac.compare_digest(header, signature("another", request.body))
    assert not hmac.compare_digest(
        header, signature("whsec_test", request.body.replace(b"0.12", b"0.13"))
    )


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (400, False), (302, False)]
)
async def test_http_status_decides_the_retry(
    receivers: Callable[..., Any], status: int, retryable: bool
) -> None:
    receiver = await receivers(status=status)
    channel = SlackChannel("slack", SlackSettings(url=receiver.url))
    try:
        with pytest.raises(DeliveryError) as caught:
            await channel.send(FIRING)
    finally:
        await channel.close()
    assert (caught.value.status, caught.value.retryable) == (status, retryable)


# --- dispatcher ------------------------------------------------------------------------------


class JournalRecorder:
    """The journal hook: keeps (kind, payload) records."""

    def __init__(self) -> None:
        self.records: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def __call__(self, kind: str, payload: dict[str, Any]) -> None:
        self.records.put_nowait((kind, payload))

    async def next(self) -> tuple[str, dict[str, Any]]:
        return await asyncio.wait_for(self.records.get(), DEADLINE_S)

    def taken(self) -> list[tuple[str, dict[str, Any]]]:
        records = []
        while not self.records.empty():
            records.append(self.records.get_nowait())
        return records


@pytest.fixture
async def dispatchers() -> AsyncIterator[Callable[..., Any]]:
    """Start dispatchers, each closed at the end of the test."""
    started: list[Dispatcher] = []

    async def start(*args: Any, **kwargs: Any) -> Dispatcher:
        dispatcher = Dispatcher(*args, **kwargs)
        await dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        await dispatcher.close(drain_timeout_s=0.0)


async def test_routing_by_severity(
    receivers: Callable[..., Any], dispatchers: Callable[..., Any]
) -> None:
    pager, chat = await receivers(status=202), await receivers()
    journal = JournalRecorder()
    channels = [
        PagerDutyChannel(
            "oncall", PagerDutySettings(routing_key="k", url=pager.url), Severity.CRITICAL
        ),
        SlackChannel("chat", SlackSettings(url=chat.url), Severity.INFO),
    ]
    dispatcher = await dispatchers(channels, journal)
    dispatcher.submit([WARNING, FIRING])
    await asyncio.wait_for(dispatcher.join(), DEADLINE_S)
    assert (await pager.next()).json()["dedup_key"] == DEDUP_KEY
    assert pager.requests.empty()  # the warning stayed off the pager
    assert [(await chat.next()).json()["text"].split(":")[0] for _ in range(2)] == [
        "[WARNING] drift_high",
        "[CRITICAL] error_rate_high",
    ]
    assert dispatcher.stats == {"oncall": ChannelStats(sent=1), "chat": ChannelStats(sent=2)}
    assert journal.taken() == [("alert.firing", WARNING.to_dict()), ("alert.firing", FIRING_DICT)]
    assert dispatcher.journal_stats == JournalStats(written=2)


async def test_retried_then_delivered(
    receivers: Callable[..., Any], dispatchers: Callable[..., Any]
) -> None:
    receiver = await receivers(statuses=[500, 503])
    journal = JournalRecorder()
    channel = WebhookChannel("hook", WebhookSettings(url=receiver.url, secret="s"))
    dispatcher = await dispatchers([channel], journal, FAST_RETRY)
    dispatcher.submit([FIRING, RESOLVED])
    await asyncio.wait_for(dispatcher.join(), DEADLINE_S)
    states = [(await receiver.next()).json()["state"] for _ in range(4)]
    assert states == ["firing", "firing", "firing", "resolved"]  # in order, the resolve last
    assert dispatcher.stats["hook"] == ChannelStats(sent=2, retried=2)
    assert [kind for kind, _ in journal.taken()] == ["alert.firing", "alert.resolved"]


async def test_final_http_error_is_not_retried(
    receivers: Callable[..., Any], dispatchers: Callable[..., Any]
) -> None:
    receiver = await receivers(status=400)
    journal = JournalRecorder()
    channel = PagerDutyChannel("oncall", PagerDutySettings(routing_key="bad", url=receiver.url))
    dispatcher = await dispatchers([channel], journal, FAST_RETRY)
    dispatcher.submit([FIRING])
    await asyncio.wait_for(dispatcher.join(), DEADLINE_S)
    await receiver.next()
    assert receiver.requests.empty()
    assert dispatcher.stats["oncall"] == ChannelStats(failed=1)
    assert journal.taken()[1] == (
        "alert.delivery_failed",
        {
            "channel": "oncall",
            "type": "PagerDutyChannel",
            "rule": "error_rate_high",
            "state": "firing",
            "severity": "critical",
            "dedup_key": DEDUP_KEY,
            "labels": CREDIT,
            "attempts": 1,
            "error": "HTTP 400: unavailable",
            "retryable": False,
        },
    )


async def test_unreachable_channel_fails_without_blocking_others(
    receivers: Callable[..., Any], dispatchers: Callable[..., Any], closed_port: int
) -> None:
    chat = await receivers()
    journal = JournalRecorder()
    down = WebhookChannel(
        "down", WebhookSettings(url=f"http://127.0.0.1:{closed_port}/", secret="s")
    )
    up = SlackChannel("chat", SlackSettings(url=chat.url))
    # the first retry waits at least 0.25 s: long beside a loopback POST
    dispatcher = await dispatchers(
        [down, up], journal, RetryPolicy(attempts=3, base_s=0.5, max_s=1.0)
    )
    dispatcher.submit([FIRING])

    assert (await chat.next()).json()["text"].startswith(SUMMARY)
    assert dispatcher.stats["down"].failed == 0  # still retrying while chat got its alert
    assert await journal.next() == ("alert.firing", FIRING_DICT)

    kind, failure = await journal.next()
    assert kind == "alert.delivery_failed"
    assert (failure["channel"], failure["attempts"], failure["retryable"]) == ("down", 3, True)
    assert "ClientConnectorError" in failure["error"]
    await asyncio.wait_for(dispatcher.join(), DEADLINE_S)
    assert dispatcher.stats == {
        "down": ChannelStats(failed=1, retried=2),
        "chat": ChannelStats(sent=1),
    }


async def test_full_lane_drops_and_journals(receivers: Callable[..., Any]) -> None:
    receiver = await receivers()
    journal = JournalRecorder()
    channel = SlackChannel("chat", SlackSettings(url=receiver.url))
    dispatcher = Dispatcher([channel], journal, FAST_RETRY, queue_size=2)
    alerts = [FIRING, RESOLVED, WARNING]
    dispatcher.submit(alerts)  # not started: the lane holds two, the third is dropped
    assert dispatcher.stats["chat"] == ChannelStats(dropped=1)
    await dispatcher.start()
    await dispatcher.close(drain_timeout_s=DEADLINE_S)
    assert dispatcher.stats["chat"] == ChannelStats(sent=2, dropped=1)
    records = journal.taken()
    assert [kind for kind, _ in records] == [
        "alert.firing",
        "alert.resolved",
        "alert.firing",
        "alert.delivery_failed",
    ]
    assert (records[3][1]["rule"], records[3][1]["attempts"], records[3][1]["error"]) == (
        "drift_high",
        0,
        "queue full",
    )


async def test_close_gives_up_on_what_does_not_drain(closed_port: int) -> None:
    down = WebhookChannel(
        "down", WebhookSettings(url=f"http://127.0.0.1:{closed_port}/", secret="s")
    )
    dispatcher = Dispatcher([down], retry=RetryPolicy(attempts=5, base_s=30.0, max_s=30.0))
    await dispatcher.start()
    dispatcher.submit([FIRING, RESOLVED])
    await dispatcher.close(drain_timeout_s=0.1)
    # whether the first attempt had begun or not: neither alert is delivered nor failed
    stats = dispatcher.stats["down"]
    assert (stats.sent, stats.failed, stats.dropped) == (0, 0, 2)
    dispatcher.submit([FIRING])  # after close: dropped, never queued
    assert dispatcher.stats["down"].dropped == 3


async def test_a_failing_journal_does_not_stop_delivery(
    receivers: Callable[..., Any], dispatchers: Callable[..., Any]
) -> None:
    receiver = await receivers()

    async def broken(kind: str, payload: dict[str, Any]) -> None:
        raise OSError("disk full")

    channel = SlackChannel("chat", SlackSettings(url=receiver.url))
    dispatcher = await dispatchers([channel], broken)
    dispatcher.submit([FIRING, RESOLVED])
    await asyncio.wait_for(dispatcher.join(), DEADLINE_S)
    assert dispatcher.stats["chat"] == ChannelStats(sent=2)
    assert dispatcher.journal_stats == JournalStats(failed=2)


def test_retry_delays_grow_capped_with_jitter() -> None:
    policy = RetryPolicy(attempts=6, base_s=0.5, max_s=3.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (5, 3.0)]:
        delays = [policy.delay(retry, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 4  # spread out, not one fixed delay


# --- the pipeline ----------------------------------------------------------------------------


async def test_alerting_end_to_end(receivers: Callable[..., Any]) -> None:
    receiver = await receivers()
    config = parse_alerts(
        tomllib.loads(
            f"""
            [alerts]
            evaluate_interval_s = 0.02
            [[alerts.rules]]
            name = "breaker_open"
            metric = "breaker_open"
            above = 0.5
            severity = "critical"
            [alerts.channels.hook]
            type = "webhook"
            url = "{receiver.url}"
            secret = "s"
            """
        )["alerts"]
    )
    samples = [Sample("breaker_open", 1.0, CREDIT)]
    journal = JournalRecorder()
    alerting = Alerting(config, lambda: samples, journal)
    await alerting.start()
    try:
        firing = (await receiver.next()).json()
        assert (firing["rule"], firing["state"], firing["labels"]) == (
            "breaker_open",
            "firing",
            CREDIT,
        )
        assert [alert.rule.name for alert in alerting.engine.active()] == ["breaker_open"]

        samples[0] = Sample("breaker_open", 0.0, CREDIT)
        resolved = (await receiver.next()).json()
        assert (resolved["state"], resolved["dedup_key"]) == ("resolved", firing["dedup_key"])
    finally:
        await alerting.close()
    assert [kind for kind, _ in journal.taken()] == ["alert.firing", "alert.resolved"]
    assert receiver.requests.empty()  # deduplicated: one firing, one resolve
    assert alerting.dispatcher.stats["hook"] == ChannelStats(sent=2)
