"""The control path: every admin operation is authorized (at the transport's choke point),
journaled durably on the admin stream, and only then applied; the admin stream is the source
of truth, and `replay` rebuilds the applied state from it at start-up.

API tokens: a token.created / token.revoked record carries the token's public fields and the
SHA-256 of its secret (never the secret), so a gateway whose token file is lost or stale gets
it back from the journal. Deployments, versions and traffic policies: lifecycle/operations.py,
whose records `replay_lifecycle` applies once the repository is loaded.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime
from typing import Any

from gateway.config import ServerConfig
from gateway.errors import GatewayError, InvalidInput, JournalOff
from gateway.governance.approvals import (
    CHANGE_APPROVED,
    CHANGE_EXPIRED,
    CHANGE_REJECTED,
    CHANGE_REQUESTED,
    ChangeRequest,
    ChangeRequests,
    ChangeState,
)
from gateway.governance.identity import TOKEN_CREATED, TOKEN_REVOKED, TokenInfo, TokenStore
from gateway.governance.ledger import ADMIN, Ledger, time_ns
from gateway.governance.rbac import Role
from gateway.lifecycle.operations import Lifecycle
from gateway.lifecycle.sources import Sources
from gateway.serving import InferenceService

ALERTS_ACTOR = "system:alerts"
JOURNAL_EXPORTED = "journal.exported"  # admin record of an export through the admin API
SECRET_HASH = "secret_sha256"  # payload key of token records: what `replay` restores from
_CHANGE_RECORDS = (CHANGE_REQUESTED, CHANGE_APPROVED, CHANGE_REJECTED, CHANGE_EXPIRED)
_DECISION_KIND = {
    ChangeState.APPROVED: CHANGE_APPROVED,
    ChangeState.REJECTED: CHANGE_REJECTED,
    ChangeState.EXPIRED: CHANGE_EXPIRED,
}
# Added to every admin record journaled while an approved change applies: which change, and
# who approved it.
_APPROVAL: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "approval", default=None
)


class Control:
    """Tokens, and with the inference service (the server; not the offline `modelgate token`)
    the lifecycle of its deployments and its monitoring reports."""

    def __init__(
        self,
        tokens: TokenStore,
        ledger: Ledger | None,
        service: InferenceService | None = None,
        sources: Sources | None = None,
        config: ServerConfig | None = None,
    ) -> None:
        config = config or ServerConfig()
        self._tokens = tokens
        self._ledger = ledger
        self._changes = ChangeRequests(config.change_ttl_s)
        self._lifecycle = None
        self._service = service
        if service is not None and sources is not None:
            self._lifecycle = Lifecycle(
                service.registry,
                sources,
                self._journal,
                config.breaker,
                config.monitoring.slow_request_ms,
                config.monitoring.drift if config.monitoring.sketches else None,
            )

    @property
    def service(self) -> InferenceService:
        if self._service is None:
            raise RuntimeError("this Control manages tokens only")
        return self._service

    @property
    def lifecycle(self) -> Lifecycle:
        if self._lifecycle is None:
            raise RuntimeError("this Control manages tokens only")
        return self._lifecycle

    async def _journal(
        self, kind: str, actor: str, payload: dict[str, Any], durable: bool = True
    ) -> None:
        approval = _APPROVAL.get()
        if approval is not None:
            payload = {**payload, **approval}
        if self._ledger is not None:
            await self._ledger.journal.append(ADMIN, kind, actor, payload, durable=durable)

    async def journal_read(self, operation: str, actor: str, payload: dict[str, Any]) -> None:
        """An admin API read: who looked at what (not awaited to disk: it changes nothing)."""
        await self._journal(f"admin.{operation}", actor, payload, durable=False)

    async def journal_alert(self, kind: str, payload: dict[str, Any]) -> None:
        """An alert notification or a failed delivery, on the admin stream."""
        await self._journal(kind, ALERTS_ACTOR, payload)

    async def journal_refusal(
        self, kind: str, actor: str, payload: dict[str, Any], error: GatewayError
    ) -> None:
        """Journal a refused admin operation (once: `error.journaled` says it was)."""
        if not error.journaled:
            await self._journal(kind + ".failed", actor, {**payload, "error": error.message})
            error.journaled = True

    # ---- four-eyes approvals ----------------------------------------------------------------

    def changes(self) -> list[ChangeRequest]:
        return self._changes.list(time.time())

    def change(self, change_id: str) -> ChangeRequest:
        return self._changes.get(change_id)

    async def request_change(
        self, deployment: str, operation: str, document: Any, actor: str
    ) -> ChangeRequest:
        change = self._changes.create(deployment, operation, document, actor, time.time())
        await self._journal(CHANGE_REQUESTED, actor, change.to_dict())
        self._changes.put(change)
        return change

    async def decide_change(
        self, actor: str, change_id: str, approve: bool, reason: str
    ) -> ChangeRequest:
        """Approve or reject a pending change (journaled; a refusal too). Raises
        ChangeNotFound, SelfApproval, InvalidInput (not pending, or expired just now)."""
        kind = CHANGE_APPROVED if approve else CHANGE_REJECTED
        try:
            decided = self._changes.decide(change_id, actor, approve, reason, time.time())
        except GatewayError as error:
            await self.journal_refusal(kind, actor, {"id": change_id}, error)
            raise
        await self._journal(_DECISION_KIND[decided.state], actor, decided.to_dict())
        self._changes.put(decided)
        if decided.state is ChangeState.EXPIRED:
            raise InvalidInput(f"change request '{change_id}' expired")
        return decided

    async def apply_change(self, change: ChangeRequest, operation: Awaitable[Any]) -> None:
        """Run an approved change's operation as its requester asked, its records marked with
        the change and the approver. A failure is kept on the change and raised."""
        token = _APPROVAL.set({"change": change.id, "approved_by": change.decided_by})
        try:
            await operation
        except GatewayError as error:
            self._changes.put(dataclasses.replace(change, error=error.message))
            raise
        finally:
            _APPROVAL.reset(token)

    async def export_journal(self, actor: str, stream: str, until: str) -> dict[str, Any]:
        """Export `stream`'s records past its export mark (up to the ISO 8601 time `until`,
        when not empty) into the journal's export folder and move the mark; journaled.
        Raises InvalidInput (stream, time), JournalOff."""
        if self._ledger is None:
            raise JournalOff()
        streams = self._ledger.journal.options.streams
        if stream not in streams:
            raise InvalidInput(f"'stream' must be one of {', '.join(streams)}, not {stream!r}")
        try:
            until_ns = time_ns(until) if until else None
        except ValueError as error:
            raise InvalidInput(f"'until': {error}") from None
        done = await self._ledger.export_new(stream, until_ns)
        result: dict[str, Any] = {"stream": stream, "path": "", "records": 0}
        if done is not None:
            result.update(
                path=str(done.path), records=done.records, first_seq=done.first_seq,
                last_seq=done.last_seq,
            )  # fmt: skip
        result["exported_through"] = self._ledger.journal.manifest(stream).exported_through
        await self._journal(JOURNAL_EXPORTED, actor, result)
        return result

    async def _admin_records(self) -> list[Any]:
        if self._ledger is None:
            return []
        ledger = self._ledger
        return await asyncio.to_thread(lambda: list(ledger.journal.read(ADMIN)))

    async def create_token(
        self, actor: str, name: str, role: str, scopes: Iterable[str] | None
    ) -> tuple[TokenInfo, str]:
        """A new token and its secret (shown this once). Raises InvalidInput."""
        info, secret, digest = self._tokens.prepare(name, role, scopes)
        await self._journal(TOKEN_CREATED, actor, {**info.to_dict(), SECRET_HASH: digest})
        await asyncio.to_thread(self._tokens.restore, info, digest)
        return info, secret

    async def revoke_token(self, actor: str, token_id: str) -> TokenInfo:
        """Raises TokenNotFound. Revoking a revoked token changes and journals nothing."""
        info = self._tokens.get(token_id)
        if info.revoked_at is not None:
            return info
        revoked = dataclasses.replace(info, revoked_at=datetime.now(UTC).isoformat("T", "seconds"))
        digest = self._tokens.digest_of(token_id)
        await self._journal(TOKEN_REVOKED, actor, {**revoked.to_dict(), SECRET_HASH: digest})
        await asyncio.to_thread(self._tokens.restore, revoked, digest)
        return revoked

    def list_tokens(self) -> list[TokenInfo]:
        return self._tokens.list()

    async def bootstrap(self) -> str | None:
        """First start: the admin token's secret (also in <tokens dir>/admin-token, 0600).
        Call after `replay`: a token file rebuilt from the journal is no first start."""
        created = await asyncio.to_thread(self._tokens.bootstrap)
        if created is None:
            return None
        info, secret = created
        payload = {**info.to_dict(), SECRET_HASH: self._tokens.digest_of(info.id)}
        await self._journal(TOKEN_CREATED, "bootstrap", payload)
        return secret

    async def replay_tokens(self) -> int:
        """Bring the token file in line with the admin stream; the number of changes."""
        changed = 0
        for record in await self._admin_records():
            if record.kind in (TOKEN_CREATED, TOKEN_REVOKED) and SECRET_HASH in record.payload:
                info = _token_info(record.payload)
                digest = record.payload[SECRET_HASH]
                changed += await asyncio.to_thread(self._tokens.restore, info, digest)
        return changed

    async def replay_lifecycle(self) -> int:
        """Apply the admin stream's lifecycle records, in order, over the loaded repository;
        the number applied."""
        applied = 0
        for record in await self._admin_records():
            if record.kind in _CHANGE_RECORDS:
                self._changes.put(ChangeRequest.from_dict(record.payload))
                applied += 1
            else:
                applied += await self.lifecycle.replay(record.kind, record.actor, record.payload)
        return applied


def _token_info(payload: dict[str, Any]) -> TokenInfo:
    return TokenInfo(
        id=payload["id"],
        name=payload["name"],
        role=Role.parse(payload["role"]),
        scopes=frozenset(payload["scopes"]),
        created_at=payload["created_at"],
        revoked_at=payload["revoked_at"],
    )
