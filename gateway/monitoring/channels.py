"""Alert channels: deliver one notification to one destination, in one attempt.

A channel's `send` makes one attempt and raises DeliveryError, saying whether a retry may help;
routing by severity, retries with back-off and the journal are the Dispatcher's (dispatch.py).
`CHANNEL_TYPES` maps the ``type`` of an ``[alerts.channels.<name>]`` table to its class, whose
``settings_type`` holds that table's other keys.

Payloads (tests/test_channels.py asserts them exactly; the HTTP channels share the keys `url`
and `timeout_s`, `HttpSettings`):

- email: a text/plain message; Subject is the alert's summary, the body its `detail_lines`.
  STARTTLS verifies the server's certificate against the system's CAs or ``ca_file``; AUTH is
  only allowed after STARTTLS, so a password never travels in clear text.
- slack: an incoming-webhook ``{"text": summary + "\\n" + detail lines}``, with ``& < >``
  escaped as Slack asks (so a label cannot ping ``<!channel>``).
- pagerduty: Events API v2. A firing alert triggers ``{"routing_key", "event_action":
  "trigger", "dedup_key", "client": "Modelgate", "payload": {"summary", "source", "severity",
  "timestamp", "class", "component"?, "custom_details"}}``; a resolve sends
  ``{"routing_key", "event_action": "resolve", "dedup_key"}`` with the same dedup_key.
  Severity maps critical/warning/info to PagerDuty's names of the same spelling ("error" is
  unused). A 202 is success.
- webhook: the body is `Alert.to_dict` as compact JSON with sorted keys. Like Stripe, the
  signature covers the timestamp, so a captured request cannot be replayed later::

      X-Modelgate-Timestamp: <unix seconds>
      X-Modelgate-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

  A receiver recomputes it over the raw body bytes, compares in constant time and rejects old
  timestamps (five minutes is usual). A retry is signed anew with its own timestamp.

HTTP answers: 2xx is delivered; 408, 429 and 5xx, timeouts and connection errors may be retried;
other answers (3xx included: redirects are not followed, a POST must not turn into a GET) are
final. SMTP: 4xx replies and connection errors may be retried; 5xx replies (bad credentials,
refused recipients) and certificate errors are final.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import aiohttp

from gateway.config import ConfigError
from gateway.monitoring.alerts import Alert, Severity

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PAGERDUTY_SUMMARY_CHARS = 1024  # the Events API's limit
RETRYABLE_HTTP = frozenset({408, 429})  # besides 5xx

logger = logging.getLogger(__name__)


class DeliveryError(Exception):
    """One attempt to deliver an alert failed; `retryable` says whether another may succeed."""

    def __init__(
        self, channel: str, reason: str, *, retryable: bool, status: int | None = None
    ) -> None:
        super().__init__(f"channel {channel}: {reason}")
        self.channel = channel
        self.reason = reason
        self.retryable = retryable
        self.status = status  # the HTTP status or SMTP reply code, when there was one


class Channel(Protocol):
    """A destination for alerts. `send` makes one attempt (DeliveryError on failure); `close`
    releases what the channel holds (an HTTP session) and is called once, at shutdown."""

    name: str
    min_severity: Severity

    async def send(self, alert: Alert) -> None: ...

    async def close(self) -> None: ...


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def detail_lines(alert: Alert) -> list[str]:
    """The human-readable lines of an alert: the email body and the Slack message's body."""
    rule = alert.rule
    bounds = [f"above {rule.above:g}"] if rule.above is not None else []
    bounds += [f"below {rule.below:g}"] if rule.below is not None else []
    labels = ", ".join(f"{key}={value}" for key, value in sorted(alert.labels.items()))
    lines = [
        f"Rule: {rule.name} ({rule.metric} {' or '.join(bounds)}, for {rule.for_s:g} s)",
        f"State: {alert.state}",
        f"Severity: {alert.severity.label}",
        f"Value: {alert.value:g}",
        f"Labels: {labels or '-'}",
        f"Started: {_iso(alert.started_s)}",
    ]
    if alert.resolved_s is not None:
        lines.append(f"Resolved: {_iso(alert.resolved_s)}")
    lines.append(f"Dedup key: {alert.dedup_key}")
    return lines


def _check_timeout(timeout_s: float) -> None:
    if not timeout_s > 0:
        raise ConfigError("timeout_s must be > 0")


# --- email ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailSettings:
    """``type = "email"``: SMTP submission, optionally with STARTTLS and AUTH."""

    host: str = "localhost"
    port: int = 25
    starttls: bool = False
    username: str = ""  # AUTH when set; requires starttls
    password: str = ""
    sender: str = ""
    recipients: list[str] = field(default_factory=list)
    ca_file: str = ""  # PEM CAs to trust for STARTTLS instead of the system's (a private relay)
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if "@" not in self.sender:
            raise ConfigError("sender must be an email address")
        if not self.recipients or not all(
            isinstance(to, str) and "@" in to for to in self.recipients
        ):
            raise ConfigError("recipients must be a non-empty list of email addresses")
        if self.username and not self.starttls:
            raise ConfigError("username needs starttls = true (no AUTH in clear text)")
        if self.ca_file and not (self.starttls and Path(self.ca_file).is_file()):
            raise ConfigError("ca_file must name a PEM file, and needs starttls = true")
        if not 0 < self.port < 65536:
            raise ConfigError("port must be a port number")
        _check_timeout(self.timeout_s)


def email_message(alert: Alert, settings: EmailSettings) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.recipients)
    message["Subject"] = alert.summary
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2])
    message.set_content("\n".join(detail_lines(alert)) + "\n")
    return message


class EmailChannel:
    """Sends with the standard library's smtplib in a thread of the loop's default executor:
    one thread per email channel at most (its dispatcher lane sends one alert at a time), for
    at most about timeout_s per SMTP step. A cancelled send cannot stop its thread; the
    timeout ends it."""

    settings_type: ClassVar[type[EmailSettings]] = EmailSettings

    def __init__(
        self, name: str, settings: EmailSettings, min_severity: Severity = Severity.WARNING
    ) -> None:
        self.name = name
        self.min_severity = min_severity
        self.settings = settings
        # Built once: loading CAs reads files. None: no STARTTLS.
        self._tls = (
            ssl.create_default_context(cafile=settings.ca_file or None)
            if settings.starttls
            else None
        )

    async def send(self, alert: Alert) -> None:
        await asyncio.to_thread(self._deliver, email_message(alert, self.settings))

    async def close(self) -> None:
        """Nothing held between sends: each opens its own SMTP connection."""

    def _deliver(self, message: EmailMessage) -> None:
        settings = self.settings
        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s) as smtp:
                if self._tls is not None:
                    smtp.starttls(context=self._tls)
                if settings.username:
                    smtp.login(settings.username, settings.password)
                refused = smtp.send_message(message)
        except smtplib.SMTPResponseException as error:
            text = error.smtp_error
            text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
            reason = f"SMTP {error.smtp_code} {text}"
            retryable = 400 <= error.smtp_code < 500
            raise DeliveryError(
                self.name, reason, retryable=retryable, status=error.smtp_code
            ) from error
        except smtplib.SMTPRecipientsRefused as error:
            # every recipient refused (a partial refusal is a delivery, logged below)
            retryable = all(400 <= code < 500 for code, _ in error.recipients.values())
            reason = f"recipients refused: {error.recipients}"
            raise DeliveryError(self.name, reason, retryable=retryable) from error
        except (ssl.SSLCertVerificationError, smtplib.SMTPNotSupportedError) as error:
            raise DeliveryError(self.name, str(error), retryable=False) from error
        except (OSError, smtplib.SMTPException) as error:
            reason = f"{type(error).__name__}: {error}"
            raise DeliveryError(self.name, reason, retryable=True) from error
        if refused:
            logger.warning("alert channel %s: recipients refused: %s", self.name, refused)


# --- HTTP channels -------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpSettings:
    """The keys every HTTP channel has."""

    url: str = ""
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"url must start with http:// or https://, not {self.url!r}")
        _check_timeout(self.timeout_s)


S = TypeVar("S", bound=HttpSettings)


class _HttpChannel(Generic[S]):
    """POSTs JSON with one aiohttp session per channel, opened on the first send (inside the
    running loop, as aiohttp requires) and closed by `close`."""

    def __init__(self, name: str, settings: S, min_severity: Severity = Severity.WARNING) -> None:
        self.name = name
        self.min_severity = min_severity
        self.settings = settings
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(self, body: bytes, headers: Mapping[str, str] = {}) -> None:
        """POST the JSON `body` with `headers`; one attempt."""
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.post(
                self.settings.url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                allow_redirects=False,
            ) as response:
                if response.status < 300:
                    return
                text = (await response.text(errors="replace"))[:200]
        except (aiohttp.ClientError, TimeoutError) as error:
            reason = f"{type(error).__name__}: {error}"
            raise DeliveryError(self.name, reason, retryable=True) from error
        status = response.status
        retryable = status >= 500 or status in RETRYABLE_HTTP
        raise DeliveryError(self.name, f"HTTP {status}: {text}", retryable=retryable, status=status)


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class SlackSettings(HttpSettings):
    """``type = "slack"``: `url` is the incoming webhook's."""


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: Alert) -> dict[str, Any]:
    return {"text": _slack_escape("\n".join([alert.summary, *detail_lines(alert)]))}


class SlackChannel(_HttpChannel[SlackSettings]):
    settings_type: ClassVar[type[SlackSettings]] = SlackSettings

    async def send(self, alert: Alert) -> None:
        await self._post(_json(slack_payload(alert)))


@dataclass(frozen=True)
class PagerDutySettings(HttpSettings):
    """``type = "pagerduty"``: the Events API v2 of one service's integration."""

    url: str = PAGERDUTY_EVENTS_URL
    routing_key: str = ""
    source: str = ""  # payload.source; empty: this host's name

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.routing_key:
            raise ConfigError("routing_key is required")


def pagerduty_event(alert: Alert, routing_key: str, source: str) -> dict[str, Any]:
    if alert.state == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert.dedup_key}
    payload: dict[str, Any] = {
        "summary": alert.summary[:PAGERDUTY_SUMMARY_CHARS],
        "source": source,
        "severity": alert.severity.label,
        "timestamp": _iso(alert.started_s),
        "class": alert.rule.metric,
        "custom_details": alert.to_dict(),
    }
    if "deployment" in alert.labels:
        payload["component"] = alert.labels["deployment"]
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "client": "Modelgate",
        "payload": payload,
    }


class PagerDutyChannel(_HttpChannel[PagerDutySettings]):
    settings_type: ClassVar[type[PagerDutySettings]] = PagerDutySettings

    async def send(self, alert: Alert) -> None:
        source = self.settings.source or socket.gethostname()
        await self._post(_json(pagerduty_event(alert, self.settings.routing_key, source)))


@dataclass(frozen=True)
class WebhookSettings(HttpSettings):
    """``type = "webhook"``: a JSON POST signed with HMAC-SHA256."""

    secret: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.secret:
            raise ConfigError("secret is required (it signs every request)")


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookChannel(_HttpChannel[WebhookSettings]):
    settings_type: ClassVar[type[WebhookSettings]] = WebhookSettings

    async def send(self, alert: Alert) -> None:
        body = _json(alert.to_dict())
        timestamp = str(int(time.time()))
        signature = webhook_signature(self.settings.secret, timestamp, body)
        await self._post(
            body, {"X-Modelgate-Timestamp": timestamp, "X-Modelgate-Signature": signature}
        )


ChannelClass = type[EmailChannel | SlackChannel | PagerDutyChannel | WebhookChannel]

CHANNEL_TYPES: dict[str, ChannelClass] = {
    "email": EmailChannel,
    "slack": SlackChannel,
    "pagerduty": PagerDutyChannel,
    "webhook": WebhookChannel,
}
