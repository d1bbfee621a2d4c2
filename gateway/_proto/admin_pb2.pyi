from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetPredictionRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class GetPredictionResponse(_message.Message):
    __slots__ = ("record_json",)
    RECORD_JSON_FIELD_NUMBER: _ClassVar[int]
    record_json: str
    def __init__(self, record_json: _Optional[str] = ...) -> None: ...

class Token(_message.Message):
    __slots__ = ("id", "name", "role", "scopes", "created_at", "revoked_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    role: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    created_at: str
    revoked_at: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ..., created_at: _Optional[str] = ..., revoked_at: _Optional[str] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("name", "role", "scopes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "secret")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    token: Token
    secret: str
    def __init__(self, token: _Optional[_Union[Token, _Mapping]] = ..., secret: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[Token]
    def __init__(self, tokens: _Optional[_Iterable[_Union[Token, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class TrafficPolicy(_message.Message):
    __slots__ = ("weights", "sticky", "shadows", "fallback")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    STICKY_FIELD_NUMBER: _ClassVar[int]
    SHADOWS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.ScalarMap[str, int]
    sticky: bool
    shadows: _containers.RepeatedScalarFieldContainer[str]
    fallback: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, weights: _Optional[_Mapping[str, int]] = ..., sticky: _Optional[bool] = ..., shadows: _Optional[_Iterable[str]] = ..., fallback: _Optional[_Iterable[str]] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("kind", "model", "version", "sha256", "url", "timeout_s", "profile")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    model: str
    version: str
    sha256: str
    url: str
    timeout_s: float
    profile: str
    def __init__(self, kind: _Optional[str] = ..., model: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., url: _Optional[str] = ..., timeout_s: _Optional[float] = ..., profile: _Optional[str] = ...) -> None: ...

class Version(_message.Message):
    __slots__ = ("version", "state", "reason", "source", "inflight", "breaker", "shadow", "content_hash", "profile_id", "platform", "drift", "task")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    INFLIGHT_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    PROFILE_ID_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    version: str
    state: str
    reason: str
    source: Source
    inflight: int
    breaker: _struct_pb2.Struct
    shadow: _struct_pb2.Struct
    content_hash: str
    profile_id: str
    platform: str
    drift: _struct_pb2.Struct
    task: str
    def __init__(self, version: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., inflight: _Optional[int] = ..., breaker: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., shadow: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., content_hash: _Optional[str] = ..., profile_id: _Optional[str] = ..., platform: _Optional[str] = ..., drift: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., task: _Optional[str] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("name", "policy", "production", "versions", "rollout", "importance", "pending_change")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PRODUCTION_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    PENDING_CHANGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    policy: TrafficPolicy
    production: str
    versions: _containers.RepeatedCompositeFieldContainer[Version]
    rollout: _struct_pb2.Struct
    importance: str
    pending_change: Change
    def __init__(self, name: _Optional[str] = ..., policy: _Optional[_Union[TrafficPolicy, _Mapping]] = ..., production: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[Version, _Mapping]]] = ..., rollout: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., importance: _Optional[str] = ..., pending_change: _Optional[_Union[Change, _Mapping]] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ...) -> None: ...

class DeploymentRequest(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    def __init__(self, deployment: _Optional[str] = ...) -> None: ...

class PolicyChange(_message.Message):
    __slots__ = ("policy", "actor", "time", "reason", "operation")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    policy: TrafficPolicy
    actor: str
    time: str
    reason: str
    operation: str
    def __init__(self, policy: _Optional[_Union[TrafficPolicy, _Mapping]] = ..., actor: _Optional[str] = ..., time: _Optional[str] = ..., reason: _Optional[str] = ..., operation: _Optional[str] = ...) -> None: ...

class HistoryResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[PolicyChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[PolicyChange, _Mapping]]] = ...) -> None: ...

class LoadVersionRequest(_message.Message):
    __slots__ = ("deployment", "version", "source", "model", "golden", "reason", "profile_json")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PROFILE_JSON_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    version: str
    source: Source
    model: bytes
    golden: _struct_pb2.Struct
    reason: str
    profile_json: str
    def __init__(self, deployment: _Optional[str] = ..., version: _Optional[str] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., model: _Optional[bytes] = ..., golden: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., reason: _Optional[str] = ..., profile_json: _Optional[str] = ...) -> None: ...

class VersionRequest(_message.Message):
    __slots__ = ("deployment", "version", "reason")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    version: str
    reason: str
    def __init__(self, deployment: _Optional[str] = ..., version: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class WarmUpResponse(_message.Message):
    __slots__ = ("deployment", "version", "runs")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    version: str
    runs: int
    def __init__(self, deployment: _Optional[str] = ..., version: _Optional[str] = ..., runs: _Optional[int] = ...) -> None: ...

class SetTrafficRequest(_message.Message):
    __slots__ = ("deployment", "weights", "sticky", "shadows", "fallback", "reason")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    STICKY_FIELD_NUMBER: _ClassVar[int]
    SHADOWS_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    weights: _containers.ScalarMap[str, int]
    sticky: bool
    shadows: _containers.RepeatedScalarFieldContainer[str]
    fallback: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, deployment: _Optional[str] = ..., weights: _Optional[_Mapping[str, int]] = ..., sticky: _Optional[bool] = ..., shadows: _Optional[_Iterable[str]] = ..., fallback: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetShadowRequest(_message.Message):
    __slots__ = ("deployment", "version", "enabled", "reason")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    version: str
    enabled: bool
    reason: str
    def __init__(self, deployment: _Optional[str] = ..., version: _Optional[str] = ..., enabled: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class ChangeRequest(_message.Message):
    __slots__ = ("deployment", "reason")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    reason: str
    def __init__(self, deployment: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Guards(_message.Message):
    __slots__ = ("min_success_rate", "max_p99_ratio", "max_p99_ms", "min_requests", "max_drift")
    MIN_SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_P99_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_P99_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_DRIFT_FIELD_NUMBER: _ClassVar[int]
    min_success_rate: float
    max_p99_ratio: float
    max_p99_ms: float
    min_requests: int
    max_drift: str
    def __init__(self, min_success_rate: _Optional[float] = ..., max_p99_ratio: _Optional[float] = ..., max_p99_ms: _Optional[float] = ..., min_requests: _Optional[int] = ..., max_drift: _Optional[str] = ...) -> None: ...

class RolloutPlan(_message.Message):
    __slots__ = ("steps", "dwell_s", "check_interval_s", "failure_limit", "guards")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DWELL_S_FIELD_NUMBER: _ClassVar[int]
    CHECK_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    FAILURE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    GUARDS_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedScalarFieldContainer[int]
    dwell_s: float
    check_interval_s: float
    failure_limit: int
    guards: Guards
    def __init__(self, steps: _Optional[_Iterable[int]] = ..., dwell_s: _Optional[float] = ..., check_interval_s: _Optional[float] = ..., failure_limit: _Optional[int] = ..., guards: _Optional[_Union[Guards, _Mapping]] = ...) -> None: ...

class StartCanaryRequest(_message.Message):
    __slots__ = ("deployment", "version", "plan", "reason")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    version: str
    plan: RolloutPlan
    reason: str
    def __init__(self, deployment: _Optional[str] = ..., version: _Optional[str] = ..., plan: _Optional[_Union[RolloutPlan, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("id", "deployment", "operation", "document", "requester", "created_s", "expires_s", "state", "decided_by", "reason", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    CREATED_S_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_S_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    deployment: str
    operation: str
    document: _struct_pb2.Struct
    requester: str
    created_s: float
    expires_s: float
    state: str
    decided_by: str
    reason: str
    error: str
    def __init__(self, id: _Optional[str] = ..., deployment: _Optional[str] = ..., operation: _Optional[str] = ..., document: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., requester: _Optional[str] = ..., created_s: _Optional[float] = ..., expires_s: _Optional[float] = ..., state: _Optional[str] = ..., decided_by: _Optional[str] = ..., reason: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class SetImportanceRequest(_message.Message):
    __slots__ = ("deployment", "importance", "reason")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    IMPORTANCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    importance: str
    reason: str
    def __init__(self, deployment: _Optional[str] = ..., importance: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListChangesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListChangesResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ...) -> None: ...

class ChangeDecision(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class HealthRequest(_message.Message):
    __slots__ = ("deployment", "version", "window")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    version: str
    window: str
    def __init__(self, deployment: _Optional[str] = ..., version: _Optional[str] = ..., window: _Optional[str] = ...) -> None: ...

class HealthReport(_message.Message):
    __slots__ = ("deployment", "versions")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    versions: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    def __init__(self, deployment: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _struct_pb2.Struct
    def __init__(self, report: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ActualsRequest(_message.Message):
    __slots__ = ("deployment", "actuals")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    ACTUALS_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    actuals: _struct_pb2.ListValue
    def __init__(self, deployment: _Optional[str] = ..., actuals: _Optional[_Union[_struct_pb2.ListValue, _Mapping]] = ...) -> None: ...

class ExportJournalRequest(_message.Message):
    __slots__ = ("stream", "until")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    stream: str
    until: str
    def __init__(self, stream: _Optional[str] = ..., until: _Optional[str] = ...) -> None: ...

class JournalExport(_message.Message):
    __slots__ = ("stream", "path", "records", "first_seq", "last_seq", "exported_through")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    stream: str
    path: str
    records: int
    first_seq: int
    last_seq: int
    exported_through: int
    def __init__(self, stream: _Optional[str] = ..., path: _Optional[str] = ..., records: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., exported_through: _Optional[int] = ...) -> None: ...
