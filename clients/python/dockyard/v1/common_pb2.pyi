from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vec3(_message.Message):
    __slots__ = ("x", "y", "z")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    Z_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    z: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., z: _Optional[float] = ...) -> None: ...

class DockingBox(_message.Message):
    __slots__ = ("center", "size")
    CENTER_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    center: Vec3
    size: Vec3
    def __init__(self, center: _Optional[_Union[Vec3, _Mapping]] = ..., size: _Optional[_Union[Vec3, _Mapping]] = ...) -> None: ...

class EngineParams(_message.Message):
    __slots__ = ("exhaustiveness", "num_modes", "seed", "energy_range", "sleep_ms", "scoring", "mode", "cnn_scoring", "cnn_model", "no_gpu", "search_mode")
    EXHAUSTIVENESS_FIELD_NUMBER: _ClassVar[int]
    NUM_MODES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ENERGY_RANGE_FIELD_NUMBER: _ClassVar[int]
    SLEEP_MS_FIELD_NUMBER: _ClassVar[int]
    SCORING_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CNN_SCORING_FIELD_NUMBER: _ClassVar[int]
    CNN_MODEL_FIELD_NUMBER: _ClassVar[int]
    NO_GPU_FIELD_NUMBER: _ClassVar[int]
    SEARCH_MODE_FIELD_NUMBER: _ClassVar[int]
    exhaustiveness: int
    num_modes: int
    seed: int
    energy_range: float
    sleep_ms: int
    scoring: str
    mode: str
    cnn_scoring: str
    cnn_model: str
    no_gpu: bool
    search_mode: str
    def __init__(self, exhaustiveness: _Optional[int] = ..., num_modes: _Optional[int] = ..., seed: _Optional[int] = ..., energy_range: _Optional[float] = ..., sleep_ms: _Optional[int] = ..., scoring: _Optional[str] = ..., mode: _Optional[str] = ..., cnn_scoring: _Optional[str] = ..., cnn_model: _Optional[str] = ..., no_gpu: bool = ..., search_mode: _Optional[str] = ...) -> None: ...

class Pose(_message.Message):
    __slots__ = ("rank", "affinity", "rmsd_lb", "rmsd_ub")
    RANK_FIELD_NUMBER: _ClassVar[int]
    AFFINITY_FIELD_NUMBER: _ClassVar[int]
    RMSD_LB_FIELD_NUMBER: _ClassVar[int]
    RMSD_UB_FIELD_NUMBER: _ClassVar[int]
    rank: int
    affinity: float
    rmsd_lb: float
    rmsd_ub: float
    def __init__(self, rank: _Optional[int] = ..., affinity: _Optional[float] = ..., rmsd_lb: _Optional[float] = ..., rmsd_ub: _Optional[float] = ...) -> None: ...

class Gpu(_message.Message):
    __slots__ = ("index", "model", "memory_bytes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    index: int
    model: str
    memory_bytes: int
    def __init__(self, index: _Optional[int] = ..., model: _Optional[str] = ..., memory_bytes: _Optional[int] = ...) -> None: ...

class Capacity(_message.Message):
    __slots__ = ("cpu_slots", "memory_bytes", "gpus")
    CPU_SLOTS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    cpu_slots: int
    memory_bytes: int
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    def __init__(self, cpu_slots: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ...) -> None: ...

class EngineInfo(_message.Message):
    __slots__ = ("name", "version", "test_only")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TEST_ONLY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    test_only: bool
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., test_only: bool = ...) -> None: ...

class RunningTask(_message.Message):
    __slots__ = ("task_id", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...
