"""Four-eyes approval of production changes.

Each deployment has an importance. On a HIGH or CRITICAL deployment, an operation that changes
what clients get (production traffic, a canary's start or promotion, the importance itself)
does not apply when it is called: it becomes a change request, which a different principal
with the approver role must approve before it expires; only then does it apply, as the
requester asked. Rollback is the exception ("break-glass"): applied at once, flagged in the
journal. The requests live in the admin stream (requested / approved / rejected / expired), so
a restart finds the pending ones again.

Pure state; the admin API (gateway/admin.py) decides what needs approval and journals.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gateway.errors import ErrorKind, GatewayError, InvalidInput

# admin-stream kinds
CHANGE_REQUESTED = "change.requested"
CHANGE_APPROVED = "change.approved"
CHANGE_REJECTED = "change.rejected"
CHANGE_EXPIRED = "change.expired"

DEFAULT_TTL_S = 3600.0


class Importance(enum.Enum):
    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def needs_approval(self) -> bool:
        return self in (Importance.HIGH, Importance.CRITICAL)

    @classmethod
    def parse(cls, name: Any) -> Importance:
        if isinstance(name, str):
            try:
                return cls(name.strip().lower())
            except ValueError:
                pass
        known = ", ".join(i.value for i in cls)
        raise InvalidInput(f"importance must be one of {known}, not {name!r}")


class ChangeState(enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"  # and applied (or its application failed: see `error`)
    REJECTED = "rejected"
    EXPIRED = "expired"


class ChangeNotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND

    def __init__(self, change_id: str) -> None:
        super().__init__(f"no change request '{change_id}'")


class SelfApproval(GatewayError):
    kind = ErrorKind.FORBIDDEN

    def __init__(self) -> None:
        super().__init__("a change request needs a second person: the requester cannot decide it")


@dataclass(frozen=True)
class ChangeRequest:
    id: str
    deployment: str
    operation: str  # the admin call (gateway/admin.py), e.g. SetTraffic
    document: Mapping[str, Any]  # its arguments, as the requester gave them
    requester: str  # actor
    created_s: float  # wall clock
    expires_s: float
    state: ChangeState = ChangeState.PENDING
    decided_by: str = ""
    reason: str = ""  # the approver's or rejecter's
    error: str = ""  # why an approved change could not be applied

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deployment": self.deployment,
            "operation": self.operation,
            "document": dict(self.document),
            "requester": self.requester,
            "created_s": self.created_s,
            "expires_s": self.expires_s,
            "state": self.state.value,
            "decided_by": self.decided_by,
            "reason": self.reason,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChangeRequest:
        return cls(
            id=data["id"],
            deployment=data["deployment"],
            operation=data["operation"],
            document=data["document"],
            requester=data["requester"],
            created_s=data["created_s"],
            expires_s=data["expires_s"],
            state=ChangeState(data["state"]),
            decided_by=data["decided_by"],
            reason=data["reason"],
            error=data["error"],
        )


class ChangeRequests:
    """Every change request this gateway has seen, by id (event loop only)."""

    def __init__(self, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.ttl_s = ttl_s
        self._changes: dict[str, ChangeRequest] = {}

    def create(
        self,
        deployment: str,
        operation: str,
        document: Mapping[str, Any],
        requester: str,
        now: float,
    ) -> ChangeRequest:
        """A new pending request (not yet stored: journal it, then `put` it)."""
        return ChangeRequest(
            id=secrets.token_hex(6),
            deployment=deployment,
            operation=operation,
            document=dict(document),
            requester=requester,
            created_s=now,
            expires_s=now + self.ttl_s,
        )

    def get(self, change_id: str) -> ChangeRequest:
        change = self._changes.get(change_id)
        if change is None:
            raise ChangeNotFound(change_id)
        return change

    def decide(
        self, change_id: str, decider: str, approve: bool, reason: str, now: float
    ) -> ChangeRequest:
        """The decided request (not yet stored: journal it, then `put` it). Raises
        ChangeNotFound, SelfApproval, or InvalidInput when it is no longer pending (an expired
        one comes back as EXPIRED for the caller to journal and report)."""
        change = self.get(change_id)
        if change.state is not ChangeState.PENDING:
            raise InvalidInput(f"change request '{change_id}' is {change.state.value}")
        if now >= change.expires_s:
            return replace(change, state=ChangeState.EXPIRED)
        if decider == change.requester:
            raise SelfApproval()
        state = ChangeState.APPROVED if approve else ChangeState.REJECTED
        return replace(change, state=state, decided_by=decider, reason=reason)

    def put(self, change: ChangeRequest) -> None:
        self._changes[change.id] = change

    def list(self, now: float) -> list[ChangeRequest]:
        """Every request, newest first; pending ones past their time show as expired."""
        shown = [
            replace(c, state=ChangeState.EXPIRED)
            if c.state is ChangeState.PENDING and now >= c.expires_s
            else c
            for c in self._changes.values()
        ]
        return sorted(shown, key=lambda c: c.created_s, reverse=True)
