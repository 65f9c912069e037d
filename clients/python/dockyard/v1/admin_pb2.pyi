from dockyard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_READY: _ClassVar[NodeState]
    NODE_STATE_DRAINING: _ClassVar[NodeState]
    NODE_STATE_LOST: _ClassVar[NodeState]
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_READY: NodeState
NODE_STATE_DRAINING: NodeState
NODE_STATE_LOST: NodeState

class BackupRequest(_message.Message):
    __slots__ = ("to",)
    TO_FIELD_NUMBER: _ClassVar[int]
    to: str
    def __init__(self, to: _Optional[str] = ...) -> None: ...

class BackupResponse(_message.Message):
    __slots__ = ("id", "uri", "commit_position", "bytes", "records", "pause_ms", "artifact_keys", "seconds")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    COMMIT_POSITION_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_KEYS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    uri: str
    commit_position: int
    bytes: int
    records: int
    pause_ms: float
    artifact_keys: int
    seconds: float
    def __init__(self, id: _Optional[str] = ..., uri: _Optional[str] = ..., commit_position: _Optional[int] = ..., bytes: _Optional[int] = ..., records: _Optional[int] = ..., pause_ms: _Optional[float] = ..., artifact_keys: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("org", "description", "admin", "ttl_s")
    ORG_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    TTL_S_FIELD_NUMBER: _ClassVar[int]
    org: str
    description: str
    admin: bool
    ttl_s: int
    def __init__(self, org: _Optional[str] = ..., description: _Optional[str] = ..., admin: bool = ..., ttl_s: _Optional[int] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token_id", "token", "org")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    token: str
    org: str
    def __init__(self, token_id: _Optional[str] = ..., token: _Optional[str] = ..., org: _Optional[str] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("token_id", "org", "admin", "description", "created_at_ms", "revoked", "revoked_at_ms", "expires_at_ms")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    org: str
    admin: bool
    description: str
    created_at_ms: int
    revoked: bool
    revoked_at_ms: int
    expires_at_ms: int
    def __init__(self, token_id: _Optional[str] = ..., org: _Optional[str] = ..., admin: bool = ..., description: _Optional[str] = ..., created_at_ms: _Optional[int] = ..., revoked: bool = ..., revoked_at_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class SetQuotaRequest(_message.Message):
    __slots__ = ("org", "max_queued_tasks", "max_running_tasks", "max_bytes_stored", "max_running_share_pct")
    ORG_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_STORED_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_SHARE_PCT_FIELD_NUMBER: _ClassVar[int]
    org: str
    max_queued_tasks: int
    max_running_tasks: int
    max_bytes_stored: int
    max_running_share_pct: int
    def __init__(self, org: _Optional[str] = ..., max_queued_tasks: _Optional[int] = ..., max_running_tasks: _Optional[int] = ..., max_bytes_stored: _Optional[int] = ..., max_running_share_pct: _Optional[int] = ...) -> None: ...

class GetQuotaRequest(_message.Message):
    __slots__ = ("org",)
    ORG_FIELD_NUMBER: _ClassVar[int]
    org: str
    def __init__(self, org: _Optional[str] = ...) -> None: ...

class Quota(_message.Message):
    __slots__ = ("org", "max_queued_tasks", "max_running_tasks", "max_bytes_stored", "queued_tasks", "running_tasks", "bytes_stored", "max_running_share_pct")
    ORG_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_STORED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_TASKS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    BYTES_STORED_FIELD_NUMBER: _ClassVar[int]
    MAX_RUNNING_SHARE_PCT_FIELD_NUMBER: _ClassVar[int]
    org: str
    max_queued_tasks: int
    max_running_tasks: int
    max_bytes_stored: int
    queued_tasks: int
    running_tasks: int
    bytes_stored: int
    max_running_share_pct: int
    def __init__(self, org: _Optional[str] = ..., max_queued_tasks: _Optional[int] = ..., max_running_tasks: _Optional[int] = ..., max_bytes_stored: _Optional[int] = ..., queued_tasks: _Optional[int] = ..., running_tasks: _Optional[int] = ..., bytes_stored: _Optional[int] = ..., max_running_share_pct: _Optional[int] = ...) -> None: ...

class GetLeaderRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaderInfo(_message.Message):
    __slots__ = ("leader_endpoint", "this_is_leader", "epoch", "coordinator_id", "cluster")
    LEADER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    THIS_IS_LEADER_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    leader_endpoint: str
    this_is_leader: bool
    epoch: int
    coordinator_id: str
    cluster: str
    def __init__(self, leader_endpoint: _Optional[str] = ..., this_is_leader: bool = ..., epoch: _Optional[int] = ..., coordinator_id: _Optional[str] = ..., cluster: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "state", "capacity", "free_slots", "free_memory_bytes", "engines", "running", "labels", "hostname", "agent_version", "last_seen_ms", "connected_at_ms", "tools", "going_away")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    FREE_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_MS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    GOING_AWAY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    state: NodeState
    capacity: _common_pb2.Capacity
    free_slots: int
    free_memory_bytes: int
    engines: _containers.RepeatedCompositeFieldContainer[_common_pb2.EngineInfo]
    running: _containers.RepeatedCompositeFieldContainer[_common_pb2.RunningTask]
    labels: _containers.ScalarMap[str, str]
    hostname: str
    agent_version: str
    last_seen_ms: int
    connected_at_ms: int
    tools: _containers.RepeatedCompositeFieldContainer[_common_pb2.EngineInfo]
    going_away: bool
    def __init__(self, node_id: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., capacity: _Optional[_Union[_common_pb2.Capacity, _Mapping]] = ..., free_slots: _Optional[int] = ..., free_memory_bytes: _Optional[int] = ..., engines: _Optional[_Iterable[_Union[_common_pb2.EngineInfo, _Mapping]]] = ..., running: _Optional[_Iterable[_Union[_common_pb2.RunningTask, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., hostname: _Optional[str] = ..., agent_version: _Optional[str] = ..., last_seen_ms: _Optional[int] = ..., connected_at_ms: _Optional[int] = ..., tools: _Optional[_Iterable[_Union[_common_pb2.EngineInfo, _Mapping]]] = ..., going_away: bool = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node_id",)
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    def __init__(self, node_id: _Optional[str] = ...) -> None: ...

class QueueStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PriorityDepth(_message.Message):
    __slots__ = ("priority", "queued")
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    priority: int
    queued: int
    def __init__(self, priority: _Optional[int] = ..., queued: _Optional[int] = ...) -> None: ...

class OrgDepth(_message.Message):
    __slots__ = ("org", "queued")
    ORG_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    org: str
    queued: int
    def __init__(self, org: _Optional[str] = ..., queued: _Optional[int] = ...) -> None: ...

class QueueStatsResponse(_message.Message):
    __slots__ = ("queued", "delayed", "running", "by_priority", "by_org", "dispatched_total", "results_committed_total", "duplicate_results_dropped", "requeued_total", "epoch", "dispatch_latency_p50_ms", "dispatch_latency_p99_ms", "state_bytes_on_disk", "by_class")
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    DELAYED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    BY_PRIORITY_FIELD_NUMBER: _ClassVar[int]
    BY_ORG_FIELD_NUMBER: _ClassVar[int]
    DISPATCHED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_COMMITTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_RESULTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    REQUEUED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    DISPATCH_LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_BYTES_ON_DISK_FIELD_NUMBER: _ClassVar[int]
    BY_CLASS_FIELD_NUMBER: _ClassVar[int]
    queued: int
    delayed: int
    running: int
    by_priority: _containers.RepeatedCompositeFieldContainer[PriorityDepth]
    by_org: _containers.RepeatedCompositeFieldContainer[OrgDepth]
    dispatched_total: int
    results_committed_total: int
    duplicate_results_dropped: int
    requeued_total: int
    epoch: int
    dispatch_latency_p50_ms: float
    dispatch_latency_p99_ms: float
    state_bytes_on_disk: int
    by_class: _containers.RepeatedCompositeFieldContainer[ClassDepth]
    def __init__(self, queued: _Optional[int] = ..., delayed: _Optional[int] = ..., running: _Optional[int] = ..., by_priority: _Optional[_Iterable[_Union[PriorityDepth, _Mapping]]] = ..., by_org: _Optional[_Iterable[_Union[OrgDepth, _Mapping]]] = ..., dispatched_total: _Optional[int] = ..., results_committed_total: _Optional[int] = ..., duplicate_results_dropped: _Optional[int] = ..., requeued_total: _Optional[int] = ..., epoch: _Optional[int] = ..., dispatch_latency_p50_ms: _Optional[float] = ..., dispatch_latency_p99_ms: _Optional[float] = ..., state_bytes_on_disk: _Optional[int] = ..., by_class: _Optional[_Iterable[_Union[ClassDepth, _Mapping]]] = ...) -> None: ...

class ClassDepth(_message.Message):
    __slots__ = ("engine", "gpus_per_task", "cpus_per_task", "memory_bytes_per_task", "queued", "running")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    CPUS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    engine: str
    gpus_per_task: int
    cpus_per_task: int
    memory_bytes_per_task: int
    queued: int
    running: int
    def __init__(self, engine: _Optional[str] = ..., gpus_per_task: _Optional[int] = ..., cpus_per_task: _Optional[int] = ..., memory_bytes_per_task: _Optional[int] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ...) -> None: ...
