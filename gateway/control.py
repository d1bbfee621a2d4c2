"""The control path: every admin operation is authorized (at the transport's choke point),
applied, and journaled on the admin stream, durably, before the caller hears of it.

Tokens are applied before they are journaled: the record names the token's id, which exists
only once the store has made it. A failed journal append then answers 503 with the token
created but unrecorded; it is revoked again so that nothing unrecorded stays usable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from gateway.governance.identity import TOKEN_CREATED, TOKEN_REVOKED, TokenInfo, TokenStore
from gateway.governance.ledger import ADMIN, Ledger

logger = logging.getLogger("modelgate")


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
        info, secret = await asyncio.to_thread(self._tokens.create, name, role, scopes)
        try:
            await self._journal(TOKEN_CREATED, actor, info.to_dict())
        except Exception:
            await asyncio.to_thread(self._tokens.revoke, info.id)
            raise
        return info, secret

    async def revoke_token(self, actor: str, token_id: str) -> TokenInfo:
        """Raises TokenNotFound. Revoking twice journals once."""
        info, changed = await asyncio.to_thread(self._tokens.revoke, token_id)
        if changed:
            await self._journal(TOKEN_REVOKED, actor, info.to_dict())
        return info

    def list_tokens(self) -> list[TokenInfo]:
        return self._tokens.list()

    async def bootstrap(self) -> str | None:
        """First start: the admin token's secret (also in <tokens dir>/admin-token, 0600)."""
        created = await asyncio.to_thread(self._tokens.bootstrap)
        if created is None:
            return None
        info, secret = created
        await self._journal(TOKEN_CREATED, "bootstrap", info.to_dict())
        return secret
