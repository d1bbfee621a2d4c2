"""Protocol-neutral error kinds.

Every failure a client can see is one of these. They carry no HTTP or gRPC codes: each transport
maps `GatewayError.kind` to its own status in one table (`transport/http.py`, `transport/grpc.py`).
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    NOT_FOUND = "not found"
    INVALID_INPUT = "invalid input"
    TOO_LARGE = "too large"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class GatewayError(Exception):
    """Base of every error a client may see; the message is safe to show to the client."""

    kind: ErrorKind = ErrorKind.INTERNAL
    # set once the control path has journaled this refusal, so that it is journaled once
    journaled: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND

    def __init__(self, model: str, version: str | None = None) -> None:
        what = f"model '{model}'" if version is None else f"version '{version}' of model '{model}'"
        super().__init__(f"{what} not found")
        self.model = model
        self.version = version


class PredictionNotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND

    def __init__(self, request_id: str) -> None:
        super().__init__(f"no prediction record for request id '{request_id}'")
        self.request_id = request_id


class InvalidInput(GatewayError):
    """The request is malformed or does not fit the model; `tensor` names the culprit if any."""

    kind = ErrorKind.INVALID_INPUT

    def __init__(self, message: str, tensor: str | None = None) -> None:
        super().__init__(f"input '{tensor}': {message}" if tensor else message)
        self.tensor = tensor


class PayloadTooLarge(GatewayError):
    kind = ErrorKind.TOO_LARGE

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class ModelNotReady(GatewayError):
    kind = ErrorKind.UNAVAILABLE

    def __init__(self, model: str, version: str, state: str) -> None:
        super().__init__(f"version '{version}' of model '{model}' is not ready (state {state})")
        self.model = model
        self.version = version
        self.state = state


class ModelFailure(GatewayError):
    """The backend raised while running a model: the client's input passed validation."""

    kind = ErrorKind.INTERNAL

    def __init__(self, model: str, version: str, reason: str) -> None:
        super().__init__(f"model '{model}' version '{version}' failed: {reason}")
        self.model = model
        self.version = version
        self.reason = reason


class JournalOff(GatewayError):
    """An operation on the journal of a server that runs without one (`[journal] enabled`)."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("this server runs without a journal ([journal] enabled = false)")


class ModelUnavailable(GatewayError):
    """A version could not answer in time: its backend is unreachable or its breaker is open."""

    kind = ErrorKind.UNAVAILABLE

    def __init__(self, model: str, version: str, reason: str) -> None:
        super().__init__(f"model '{model}' version '{version}' is unavailable: {reason}")
        self.model = model
        self.version = version
        self.reason = reason
