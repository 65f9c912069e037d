from dockyard.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_PARTIAL: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_PARTIAL: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class InputFile(_message.Message):
    __slots__ = ("name", "content", "upload_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    content: bytes
    upload_id: str
    def __init__(self, name: _Optional[str] = ..., content: _Optional[bytes] = ..., upload_id: _Optional[str] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("name", "engine", "receptor", "ligands", "box", "params", "priority", "batch_size", "max_attempts", "sleep_task_count", "gpus_per_task", "timeout_s", "labels", "skip_invalid", "autobox_ligand", "autobox_add", "fresh", "cpus_per_task", "prepare", "protonate", "stages")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    RECEPTOR_FIELD_NUMBER: _ClassVar[int]
    LIGANDS_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SLEEP_TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SKIP_INVALID_FIELD_NUMBER: _ClassVar[int]
    AUTOBOX_LIGAND_FIELD_NUMBER: _ClassVar[int]
    AUTOBOX_ADD_FIELD_NUMBER: _ClassVar[int]
    FRESH_FIELD_NUMBER: _ClassVar[int]
    CPUS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    PREPARE_FIELD_NUMBER: _ClassVar[int]
    PROTONATE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    name: str
    engine: str
    receptor: InputFile
    ligands: _containers.RepeatedCompositeFieldContainer[InputFile]
    box: _common_pb2.DockingBox
    params: _common_pb2.EngineParams
    priority: int
    batch_size: int
    max_attempts: int
    sleep_task_count: int
    gpus_per_task: int
    timeout_s: int
    labels: _containers.ScalarMap[str, str]
    skip_invalid: bool
    autobox_ligand: InputFile
    autobox_add: float
    fresh: bool
    cpus_per_task: int
    prepare: str
    protonate: bool
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    def __init__(self, name: _Optional[str] = ..., engine: _Optional[str] = ..., receptor: _Optional[_Union[InputFile, _Mapping]] = ..., ligands: _Optional[_Iterable[_Union[InputFile, _Mapping]]] = ..., box: _Optional[_Union[_common_pb2.DockingBox, _Mapping]] = ..., params: _Optional[_Union[_common_pb2.EngineParams, _Mapping]] = ..., priority: _Optional[int] = ..., batch_size: _Optional[int] = ..., max_attempts: _Optional[int] = ..., sleep_task_count: _Optional[int] = ..., gpus_per_task: _Optional[int] = ..., timeout_s: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., skip_invalid: bool = ..., autobox_ligand: _Optional[_Union[InputFile, _Mapping]] = ..., autobox_add: _Optional[float] = ..., fresh: bool = ..., cpus_per_task: _Optional[int] = ..., prepare: _Optional[str] = ..., protonate: bool = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ("name", "engine", "params", "gpus_per_task", "cpus_per_task", "batch_size", "timeout_s", "rank_by", "receptor", "box", "keep_top", "keep_percent", "max_score")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    GPUS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    CPUS_PER_TASK_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    RANK_BY_FIELD_NUMBER: _ClassVar[int]
    RECEPTOR_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    KEEP_TOP_FIELD_NUMBER: _ClassVar[int]
    KEEP_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MAX_SCORE_FIELD_NUMBER: _ClassVar[int]
    name: str
    engine: str
    params: _common_pb2.EngineParams
    gpus_per_task: int
    cpus_per_task: int
    batch_size: int
    timeout_s: int
    rank_by: str
    receptor: InputFile
    box: _common_pb2.DockingBox
    keep_top: int
    keep_percent: float
    max_score: float
    def __init__(self, name: _Optional[str] = ..., engine: _Optional[str] = ..., params: _Optional[_Union[_common_pb2.EngineParams, _Mapping]] = ..., gpus_per_task: _Optional[int] = ..., cpus_per_task: _Optional[int] = ..., batch_size: _Optional[int] = ..., timeout_s: _Optional[int] = ..., rank_by: _Optional[str] = ..., receptor: _Optional[_Union[InputFile, _Mapping]] = ..., box: _Optional[_Union[_common_pb2.DockingBox, _Mapping]] = ..., keep_top: _Optional[int] = ..., keep_percent: _Optional[float] = ..., max_score: _Optional[float] = ...) -> None: ...

class StageProgress(_message.Message):
    __slots__ = ("stage", "name", "engine", "state", "job_id", "tasks", "ligands_in", "ligands_docked", "ligands_failed", "survivors", "survivors_chosen", "cpu_seconds", "best_score", "keep", "rank_by", "streaming")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LIGANDS_IN_FIELD_NUMBER: _ClassVar[int]
    LIGANDS_DOCKED_FIELD_NUMBER: _ClassVar[int]
    LIGANDS_FAILED_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    SURVIVORS_CHOSEN_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIELD_NUMBER: _ClassVar[int]
    RANK_BY_FIELD_NUMBER: _ClassVar[int]
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    stage: int
    name: str
    engine: str
    state: JobState
    job_id: str
    tasks: TaskCounts
    ligands_in: int
    ligands_docked: int
    ligands_failed: int
    survivors: int
    survivors_chosen: bool
    cpu_seconds: float
    best_score: float
    keep: str
    rank_by: str
    streaming: bool
    def __init__(self, stage: _Optional[int] = ..., name: _Optional[str] = ..., engine: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., job_id: _Optional[str] = ..., tasks: _Optional[_Union[TaskCounts, _Mapping]] = ..., ligands_in: _Optional[int] = ..., ligands_docked: _Optional[int] = ..., ligands_failed: _Optional[int] = ..., survivors: _Optional[int] = ..., survivors_chosen: bool = ..., cpu_seconds: _Optional[float] = ..., best_score: _Optional[float] = ..., keep: _Optional[str] = ..., rank_by: _Optional[str] = ..., streaming: bool = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job_id", "job")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job: Job
    def __init__(self, job_id: _Optional[str] = ..., job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class SubmitJobsResponse(_message.Message):
    __slots__ = ("index", "submitted", "refused")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    index: int
    submitted: SubmitJobResponse
    refused: SubmitRefusal
    def __init__(self, index: _Optional[int] = ..., submitted: _Optional[_Union[SubmitJobResponse, _Mapping]] = ..., refused: _Optional[_Union[SubmitRefusal, _Mapping]] = ...) -> None: ...

class SubmitRefusal(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class TaskCounts(_message.Message):
    __slots__ = ("total", "queued", "running", "succeeded", "failed", "cancelled")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int
    def __init__(self, total: _Optional[int] = ..., queued: _Optional[int] = ..., running: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., cancelled: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "name", "org", "engine", "state", "priority", "tasks", "ligands_total", "ligands_docked", "ligands_failed", "created_at_ms", "finished_at_ms", "unschedulable_reason", "error", "best_score", "test_only", "cpu_seconds", "ligands_skipped", "stages", "funnel_job_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LIGANDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LIGANDS_DOCKED_FIELD_NUMBER: _ClassVar[int]
    LIGANDS_FAILED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    UNSCHEDULABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BEST_SCORE_FIELD_NUMBER: _ClassVar[int]
    TEST_ONLY_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LIGANDS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    FUNNEL_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    org: str
    engine: str
    state: JobState
    priority: int
    tasks: TaskCounts
    ligands_total: int
    ligands_docked: int
    ligands_failed: int
    created_at_ms: int
    finished_at_ms: int
    unschedulable_reason: str
    error: str
    best_score: float
    test_only: bool
    cpu_seconds: float
    ligands_skipped: int
    stages: _containers.RepeatedCompositeFieldContainer[StageProgress]
    funnel_job_id: str
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., org: _Optional[str] = ..., engine: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., priority: _Optional[int] = ..., tasks: _Optional[_Union[TaskCounts, _Mapping]] = ..., ligands_total: _Optional[int] = ..., ligands_docked: _Optional[int] = ..., ligands_failed: _Optional[int] = ..., created_at_ms: _Optional[int] = ..., finished_at_ms: _Optional[int] = ..., unschedulable_reason: _Optional[str] = ..., error: _Optional[str] = ..., best_score: _Optional[float] = ..., test_only: bool = ..., cpu_seconds: _Optional[float] = ..., ligands_skipped: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[StageProgress, _Mapping]]] = ..., funnel_job_id: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "org")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    org: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., org: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job", "final", "top_hits")
    JOB_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    TOP_HITS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    final: bool
    top_hits: _containers.RepeatedCompositeFieldContainer[LigandResult]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., final: bool = ..., top_hits: _Optional[_Iterable[_Union[LigandResult, _Mapping]]] = ...) -> None: ...

class FailureGroup(_message.Message):
    __slots__ = ("kind", "reason", "count", "examples", "stage")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    EXAMPLES_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    reason: str
    count: int
    examples: _containers.RepeatedScalarFieldContainer[str]
    stage: str
    def __init__(self, kind: _Optional[str] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ..., examples: _Optional[_Iterable[str]] = ..., stage: _Optional[str] = ...) -> None: ...

class SkippedRecord(_message.Message):
    __slots__ = ("file", "record", "name", "line", "reason")
    FILE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    file: str
    record: int
    name: str
    line: int
    reason: str
    def __init__(self, file: _Optional[str] = ..., record: _Optional[int] = ..., name: _Optional[str] = ..., line: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class JobReport(_message.Message):
    __slots__ = ("job", "failures", "cpu_seconds", "skipped", "top_hits", "rank_by", "stage_columns")
    JOB_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    TOP_HITS_FIELD_NUMBER: _ClassVar[int]
    RANK_BY_FIELD_NUMBER: _ClassVar[int]
    STAGE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    job: Job
    failures: _containers.RepeatedCompositeFieldContainer[FailureGroup]
    cpu_seconds: float
    skipped: _containers.RepeatedCompositeFieldContainer[SkippedRecord]
    top_hits: _containers.RepeatedCompositeFieldContainer[LigandResult]
    rank_by: str
    stage_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., failures: _Optional[_Iterable[_Union[FailureGroup, _Mapping]]] = ..., cpu_seconds: _Optional[float] = ..., skipped: _Optional[_Iterable[_Union[SkippedRecord, _Mapping]]] = ..., top_hits: _Optional[_Iterable[_Union[LigandResult, _Mapping]]] = ..., rank_by: _Optional[str] = ..., stage_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class GetArtifactRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class ArtifactData(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListResultsRequest(_message.Message):
    __slots__ = ("job_id", "page_size", "page_token", "rank_by", "stage")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RANK_BY_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    page_size: int
    page_token: str
    rank_by: str
    stage: int
    def __init__(self, job_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., rank_by: _Optional[str] = ..., stage: _Optional[int] = ...) -> None: ...

class LigandResult(_message.Message):
    __slots__ = ("ligand", "ligand_index", "task_id", "score", "poses", "pose_key", "log_key", "smiles", "sdf_key", "preparation", "fields", "cached")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    LIGAND_FIELD_NUMBER: _ClassVar[int]
    LIGAND_INDEX_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    POSES_FIELD_NUMBER: _ClassVar[int]
    POSE_KEY_FIELD_NUMBER: _ClassVar[int]
    LOG_KEY_FIELD_NUMBER: _ClassVar[int]
    SMILES_FIELD_NUMBER: _ClassVar[int]
    SDF_KEY_FIELD_NUMBER: _ClassVar[int]
    PREPARATION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    ligand: str
    ligand_index: int
    task_id: str
    score: float
    poses: _containers.RepeatedCompositeFieldContainer[_common_pb2.Pose]
    pose_key: str
    log_key: str
    smiles: str
    sdf_key: str
    preparation: str
    fields: _containers.ScalarMap[str, float]
    cached: bool
    def __init__(self, ligand: _Optional[str] = ..., ligand_index: _Optional[int] = ..., task_id: _Optional[str] = ..., score: _Optional[float] = ..., poses: _Optional[_Iterable[_Union[_common_pb2.Pose, _Mapping]]] = ..., pose_key: _Optional[str] = ..., log_key: _Optional[str] = ..., smiles: _Optional[str] = ..., sdf_key: _Optional[str] = ..., preparation: _Optional[str] = ..., fields: _Optional[_Mapping[str, float]] = ..., cached: bool = ...) -> None: ...

class ListResultsResponse(_message.Message):
    __slots__ = ("results", "next_page_token", "total", "rank_by", "stage_columns")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RANK_BY_FIELD_NUMBER: _ClassVar[int]
    STAGE_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[LigandResult]
    next_page_token: str
    total: int
    rank_by: str
    stage_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, results: _Optional[_Iterable[_Union[LigandResult, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ..., rank_by: _Optional[str] = ..., stage_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class UploadInputChunk(_message.Message):
    __slots__ = ("name", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadInputResponse(_message.Message):
    __slots__ = ("upload_id", "size")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    size: int
    def __init__(self, upload_id: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...
