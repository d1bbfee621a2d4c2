"""The control path: every admin operation is authorized (at the transport's choke point),
journaled durably on the admin stream, and only then applied; the admin stream is the source
of truth, and `replay` rebuilds the applied state from it at start-up.

API tokens are the first state kept this way: a token.created / token.revoked record carries
the token's public fields and the SHA-256 of its secret (never the secret), so a gateway whose
token file is lost or stale gets it back from the journal.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from gateway.governance.identity import TOKEN_CREATED, TOKEN_REVOKED, TokenInfo, TokenStore
from gateway.governance.ledger import ADMIN, Ledger
from gateway.governance.rbac import Role

SECRET_HASH = "secret_sha256"  # payload key of token records: what `replay` restores from


class Control:
    def __init__(self, tokens: TokenStore, ledger: Ledger | None) -> None:
        self._tokens = tokens
        self._ledger = ledger

    async def _journal(self, kind: str, actor: str, payload: dict[str, Any]) -> None:
        if self._ledger is not None:
            await self._ledger.journal.append(ADMIN, kind, actor, payload, durable=True)

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

    async def replay(self) -> int:
        """Bring the applied state in line with the admin stream; the number of changes."""
        if self._ledger is None:
            return 0
        records = await asyncio.to_thread(lambda: list(self._ledger.journal.read(ADMIN)))
        changed = 0
        for record in records:
            if record.kind in (TOKEN_CREATED, TOKEN_REVOKED) and SECRET_HASH in record.payload:
                info = _token_info(record.payload)
                digest = record.payload[SECRET_HASH]
                changed += await asyncio.to_thread(self._tokens.restore, info, digest)
        return changed


def _token_info(payload: dict[str, Any]) -> TokenInfo:
    return TokenInfo(
        id=payload["id"],
        name=payload["name"],
        role=Role.parse(payload["role"]),
        scopes=frozenset(payload["scopes"]),
        created_at=payload["created_at"],
        revoked_at=payload["revoked_at"],
    )
