"""Access control at the transports' choke point: who is calling, may they, and the journal
entry when they may not.

`AccessControl.check(authorization, operation, deployment)` authenticates the Authorization
value (HTTP header or gRPC metadata), authorizes the operation (`rbac.OPERATIONS`), journals
every denial on the admin stream, and sets `PRINCIPAL` for the rest of the request (the
prediction record names it). Inference and model reads accept anonymous callers while
`[auth] inference` is off; everything else always needs credentials.
"""

from __future__ import annotations

from contextvars import ContextVar

from gateway.governance.identity import Authenticator, Unauthenticated
from gateway.governance.ledger import ADMIN, Ledger
from gateway.governance.rbac import (
    ANONYMOUS,
    DENIED,
    Forbidden,
    Principal,
    actor_of,
    authorize_operation,
    denial_payload,
)

# The caller of the request being handled (task-local: each request runs in its own task).
PRINCIPAL: ContextVar[Principal] = ContextVar("principal", default=ANONYMOUS)

# operations that anonymous callers may do while inference auth is off
_OPEN_WITHOUT_INFERENCE_AUTH = frozenset(("infer", "read"))


class AccessControl:
    def __init__(self, authenticator: Authenticator, ledger: Ledger | None) -> None:
        self.authenticator = authenticator
        self._ledger = ledger

    async def check(
        self, authorization: str | None, operation: str, deployment: str | None = None
    ) -> Principal:
        """The caller's principal once `operation` on `deployment` is allowed. Raises
        Unauthenticated or Forbidden, after journaling the denial."""
        anonymous_ok = (
            not self.authenticator.inference_auth and operation in _OPEN_WITHOUT_INFERENCE_AUTH
        )
        if anonymous_ok and authorization is None:
            # the common case with inference auth off: nothing to check (ANONYMOUS is an
            # unscoped predictor, allowed these operations). Set even so: whatever context the
            # transport runs requests in, a record must never name an earlier caller.
            PRINCIPAL.set(ANONYMOUS)
            return ANONYMOUS
        principal: Principal | None = None
        try:
            principal = await self.authenticator.authenticate_async(
                authorization, allow_anonymous=anonymous_ok
            )
            authorize_operation(principal, operation, deployment)
        except (Unauthenticated, Forbidden) as error:
            await self._journal_denial(principal, operation, error, deployment)
            raise
        PRINCIPAL.set(principal)
        return principal

    async def _journal_denial(
        self,
        principal: Principal | None,
        operation: str,
        error: Unauthenticated | Forbidden,
        deployment: str | None,
    ) -> None:
        if self._ledger is None:
            return
        payload = denial_payload(principal, operation, error, deployment)
        # not durable: a flood of bad credentials must not stall requests on the disk
        await self._ledger.journal.append(
            ADMIN, DENIED, actor_of(principal), payload, durable=False
        )
