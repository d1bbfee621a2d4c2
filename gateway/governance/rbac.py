"""Roles, principals and authorization: pure logic, no I/O.

Roles are ordered; each includes every role below it:

    viewer < predictor < operator < approver < admin

A principal holds one role, optionally limited to some deployments (its `scopes`: deployment or
model names; empty means every deployment). `authorize(principal, needed, deployment)` passes
when the role is at least `needed` and the deployment is in scope, and raises `Forbidden`
otherwise. The operations below name the role each needs (`OPERATIONS`; `authorize_operation`
looks it up):

| operation      | what it covers                                                   | needs     |
|----------------|------------------------------------------------------------------|-----------|
| `read`         | model and deployment metadata, statistics,                       | viewer    |
|                | a prediction record by request id                                |           |
| `journal.read` | trace lookup, journal records and proofs, verification           | viewer    |
| `journal.export` | export journal records and mark them exported (retention)      | admin     |
| `infer`        | inference requests (when inference auth is on)                   | predictor |
| `deploy`       | register a model version or a deployment                         | operator  |
| `load`         | load and warm up a version                                       | operator  |
| `unload`       | unload a version                                                 | operator  |
| `traffic`      | set routing weights, sticky keys, shadows                        | operator  |
| `rollout`      | start, step, pause and promote a canary                          | operator  |
| `rollback`     | roll back to the previous routing                                | operator  |
| `approve`      | approve or reject a pending change (four-eyes)                   | approver  |
| `token.list`   | list API tokens (never their secrets)                            | admin     |
| `token.create` | create an API token of any role                                  | admin     |
| `token.revoke` | revoke an API token                                              | admin     |
| `role.list`    | list role bindings (e.g. of LDAP groups)                         | admin     |
| `role.grant`   | bind a role to a user or group                                   | admin     |
| `role.revoke`  | remove a role binding                                            | admin     |

The same as a matrix (✓ = allowed, on every deployment in the principal's scope). Columns:
*read* = read, journal.read; *operate* = deploy, load, unload, traffic, rollout, rollback;
*administer* = token.*, role.*, journal.export.

| role \\ operation | read | infer | operate | approve | administer        |
|------------------|------|-------|---------|---------|-------------------|
| viewer           | ✓    |       |         |         |                   |
| predictor        | ✓    | ✓     |         |         |                   |
| operator         | ✓    | ✓     | ✓       |         |                   |
| approver         | ✓    | ✓     | ✓       | ✓       |                   |
| admin            | ✓    | ✓     | ✓       | ✓       | ✓ (unscoped only) |

Scopes. An action on one deployment passes `deployment=name`; a scoped principal may act only
on its deployments. An action that concerns no single deployment (`deployment=None`: tokens,
role bindings, reading the whole journal) is server-wide, and a scoped principal may never do
it, whatever its role: a scoped admin administers its deployments, it cannot mint tokens (which
would let it escape its scope) nor read other deployments' records. Listings (the models a
principal may see) are not server-wide actions: `visible(principal, needed, names)` checks the
role and keeps the names in scope.

Denials. Transports journal every denial (401 and 403) on the admin stream with kind `DENIED`,
actor `actor_of(principal)` and payload `denial_payload(...)`; secrets never appear in either.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.errors import ErrorKind, GatewayError, InvalidInput

DENIED = "denied"  # the journal kind of a denial record (admin stream)

PrincipalKind = Literal["token", "ldap", "anonymous"]


class Role(enum.IntEnum):
    """Ordered roles: a higher role may do everything a lower one may."""

    VIEWER = 1
    PREDICTOR = 2
    OPERATOR = 3
    APPROVER = 4
    ADMIN = 5

    @property
    def label(self) -> str:
        """The lowercase name used in files, the CLI, the API and messages."""
        return self.name.lower()

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, name: str) -> Role:
        """The role named `name` (`viewer`, ..., `admin`; case and surrounding blanks ignored).
        Raises InvalidInput naming the known roles."""
        if isinstance(name, str):
            role = cls.__members__.get(name.strip().upper())
            if role is not None:
                return role
        known = ", ".join(r.label for r in cls)
        raise InvalidInput(f"unknown role {name!r}; roles are {known}")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request: `name` (token name, LDAP user), its role and scopes.

    `scopes` holds deployment/model names; empty means every deployment. `token_id` is the
    public id of the API token that authenticated it (kind "token"), never its secret.
    """

    name: str
    role: Role
    scopes: frozenset[str] = field(default_factory=frozenset)
    kind: PrincipalKind = "token"
    token_id: str | None = None

    def covers(self, deployment: str) -> bool:
        """Whether `deployment` is in this principal's scope."""
        return not self.scopes or deployment in self.scopes

    @property
    def actor(self) -> str:
        """The journal's `actor` for this principal: `token:<name>/<id>`, `ldap:<name>`,
        `anonymous`."""
        if self.kind == "anonymous":
            return "anonymous"
        if self.token_id is not None:
            return f"{self.kind}:{self.name}/{self.token_id}"
        return f"{self.kind}:{self.name}"

    def describe(self) -> str:
        """For messages: `token 'ci' (id 3f9a2c1d)`, `ldap user 'alice'`, `anonymous`."""
        if self.kind == "anonymous":
            return "anonymous"
        if self.kind == "token":
            suffix = f" (id {self.token_id})" if self.token_id else ""
            return f"token '{self.name}'{suffix}"
        return f"{self.kind} user '{self.name}'"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: for the journal and a `whoami` endpoint."""
        return {
            "name": self.name,
            "kind": self.kind,
            "role": self.role.label,
            "scopes": sorted(self.scopes),
            "token_id": self.token_id,
        }


# Used when inference auth is off and the request carries no credentials: it may infer and read,
# on every deployment, and nothing more.
ANONYMOUS = Principal(name="anonymous", role=Role.PREDICTOR, kind="anonymous")


class Forbidden(GatewayError):
    """The principal is authenticated but may not do this (403 / PERMISSION_DENIED).

    `reason` is "role" (the role is below `needed`) or "scope" (the deployment is outside the
    principal's scopes, or the action is server-wide and the principal is scoped).
    """

    kind = ErrorKind.FORBIDDEN

    def __init__(
        self,
        principal: Principal,
        needed: Role,
        deployment: str | None,
        *,
        operation: str | None = None,
        reason: Literal["role", "scope"] = "role",
    ) -> None:
        who = principal.describe()
        what = f"'{operation}'" if operation else "this action"
        if reason == "role":
            where = f" on deployment '{deployment}'" if deployment is not None else ""
            message = (
                f"permission denied: {what}{where} needs role '{needed.label}' or higher; "
                f"{who} has role '{principal.role.label}'"
            )
        else:
            allowed = ", ".join(f"'{s}'" for s in sorted(principal.scopes))
            target = (
                f"deployment '{deployment}'"
                if deployment is not None
                else "the whole server (it is server-wide)"
            )
            message = (
                f"permission denied: {who} (role '{principal.role.label}') is limited to "
                f"deployments {allowed}; {what} concerns {target}"
            )
        super().__init__(message)
        self.principal = principal
        self.needed = needed
        self.deployment = deployment
        self.operation = operation
        self.reason = reason


OPERATIONS: dict[str, Role] = {
    "read": Role.VIEWER,
    "journal.read": Role.VIEWER,
    "journal.export": Role.ADMIN,
    "infer": Role.PREDICTOR,
    "deploy": Role.OPERATOR,
    "load": Role.OPERATOR,
    "unload": Role.OPERATOR,
    "traffic": Role.OPERATOR,
    "rollout": Role.OPERATOR,
    "rollback": Role.OPERATOR,
    "approve": Role.APPROVER,
    "token.list": Role.ADMIN,
    "token.create": Role.ADMIN,
    "token.revoke": Role.ADMIN,
    "role.list": Role.ADMIN,
    "role.grant": Role.ADMIN,
    "role.revoke": Role.ADMIN,
}


def authorize(
    principal: Principal,
    needed: Role,
    deployment: str | None = None,
    *,
    operation: str | None = None,
) -> None:
    """Pass if `principal` has at least `needed` and `deployment` is in its scope; a
    server-wide action (`deployment=None`) needs an unscoped principal. Raises Forbidden (with
    `operation` in its message when given). The role is checked first, so a principal lacking
    both is told about the role."""
    if principal.role < needed:
        raise Forbidden(principal, needed, deployment, operation=operation, reason="role")
    if principal.scopes and (deployment is None or deployment not in principal.scopes):
        raise Forbidden(principal, needed, deployment, operation=operation, reason="scope")


def needed_role(operation: str) -> Role:
    """The role `operation` needs. Raises ValueError for an operation not in OPERATIONS (a
    programming error, not a client's)."""
    try:
        return OPERATIONS[operation]
    except KeyError:
        raise ValueError(f"unknown operation {operation!r}") from None


def authorize_operation(
    principal: Principal, operation: str, deployment: str | None = None
) -> None:
    """`authorize` with the role that OPERATIONS gives `operation`."""
    authorize(principal, needed_role(operation), deployment, operation=operation)


def permits(principal: Principal, operation: str, deployment: str | None = None) -> bool:
    """Whether `authorize_operation` would pass (for UIs and listings; never journals)."""
    try:
        authorize_operation(principal, operation, deployment)
    except Forbidden:
        return False
    return True


def visible(principal: Principal, needed: Role, names: Iterable[str]) -> list[str]:
    """For a listing: raises Forbidden when the role is below `needed`, else the names in the
    principal's scope, in the given order."""
    if principal.role < needed:
        raise Forbidden(principal, needed, None, reason="role")
    return [name for name in names if principal.covers(name)]


def actor_of(principal: Principal | None) -> str:
    """The journal actor of a request: the principal's, or "unauthenticated"."""
    return "unauthenticated" if principal is None else principal.actor


def denial_payload(
    principal: Principal | None,
    operation: str,
    reason: str | GatewayError,
    deployment: str | None = None,
) -> dict[str, Any]:
    """The payload of a `DENIED` record on the admin stream.

    `principal` is None when authentication failed; `reason` is the error (its kind and
    message are recorded) or a text. Carries no secret: error messages never include one.
    """
    if isinstance(reason, GatewayError):
        error: str | None = reason.kind.name.lower()
        text = reason.message
    else:
        error, text = None, reason
    return {
        "operation": operation,
        "deployment": deployment,
        "error": error,
        "reason": text,
        "principal": None if principal is None else principal.to_dict(),
    }
