"""Typed views of what the coordinator returns. Each is a frozen dataclass built from its
protobuf message (`from_proto`); the raw message stays reachable as `.proto` for fields a
newer coordinator adds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Union

from .v1 import admin_pb2, job_pb2

_JOB_STATES = {
    job_pb2.JOB_STATE_QUEUED: "queued",
    job_pb2.JOB_STATE_RUNNING: "running",
    job_pb2.JOB_STATE_SUCCEEDED: "succeeded",
    job_pb2.JOB_STATE_PARTIAL: "partial",
    job_pb2.JOB_STATE_FAILED: "failed",
    job_pb2.JOB_STATE_CANCELLED: "cancelled",
}
FINAL_STATES = frozenset({"succeeded", "partial", "failed", "cancelled"})

_NODE_STATES = {
    admin_pb2.NODE_STATE_READY: "ready",
    admin_pb2.NODE_STATE_DRAINING: "draining",
    admin_pb2.NODE_STATE_LOST: "lost",
}


def _time(ms: int) -> Optional[datetime]:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if ms > 0 else None


@dataclass(frozen=True)
class TaskCounts:
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int

    @classmethod
    def from_proto(cls, t: job_pb2.TaskCounts) -> "TaskCounts":
        return cls(t.total, t.queued, t.running, t.succeeded, t.failed, t.cancelled)

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True)
class StageProgress:
    """One stage of a funnel."""

    stage: int
    name: str
    engine: str
    state: str
    job_id: str
    tasks: TaskCounts
    ligands_in: int
    ligands_docked: int
    ligands_failed: int
    survivors: int
    best_score: Optional[float]
    keep: str
    rank_by: str
    cpu_seconds: float

    @classmethod
    def from_proto(cls, s: job_pb2.StageProgress) -> "StageProgress":
        return cls(
            stage=s.stage,
            name=s.name,
            engine=s.engine,
            state=_JOB_STATES.get(s.state, "unknown"),
            job_id=s.job_id,
            tasks=TaskCounts.from_proto(s.tasks),
            ligands_in=s.ligands_in,
            ligands_docked=s.ligands_docked,
            ligands_failed=s.ligands_failed,
            survivors=s.survivors,
            best_score=s.best_score if s.ligands_docked > 0 else None,
            keep=s.keep,
            rank_by=s.rank_by,
            cpu_seconds=s.cpu_seconds,
        )


@dataclass(frozen=True)
class Job:
    """A job's state and counts. `best_score` is None until a ligand is docked."""

    job_id: str
    name: str
    org: str
    engine: str
    state: str
    priority: int
    tasks: TaskCounts
    ligands_total: int
    ligands_docked: int
    ligands_failed: int
    ligands_skipped: int
    best_score: Optional[float]
    cpu_seconds: float
    created_at: Optional[datetime]
    finished_at: Optional[datetime]
    error: str
    unschedulable_reason: str
    stages: List[StageProgress]
    proto: job_pb2.Job = field(repr=False, compare=False)

    @classmethod
    def from_proto(cls, j: job_pb2.Job) -> "Job":
        return cls(
            job_id=j.job_id,
            name=j.name,
            org=j.org,
            engine=j.engine,
            state=_JOB_STATES.get(j.state, "unknown"),
            priority=j.priority,
            tasks=TaskCounts.from_proto(j.tasks),
            ligands_total=j.ligands_total,
            ligands_docked=j.ligands_docked,
            ligands_failed=j.ligands_failed,
            ligands_skipped=j.ligands_skipped,
            best_score=j.best_score if j.ligands_docked > 0 else None,
            cpu_seconds=j.cpu_seconds,
            created_at=_time(j.created_at_ms),
            finished_at=_time(j.finished_at_ms),
            error=j.error,
            unschedulable_reason=j.unschedulable_reason,
            stages=[StageProgress.from_proto(s) for s in j.stages],
            proto=j,
        )

    @property
    def done(self) -> bool:
        """Whether the job reached a final state (succeeded, partial, failed, cancelled)."""
        return self.state in FINAL_STATES


@dataclass(frozen=True)
class JobEvent:
    """One update of `watch`: the job as it stands, and the best hits so far."""

    job: Job
    final: bool
    top_hits: List[Dict[str, Any]]


@dataclass(frozen=True)
class FailureGroup:
    kind: str
    reason: str
    count: int
    examples: List[str]
    stage: str


@dataclass(frozen=True)
class SkippedRecord:
    file: str
    record: int
    name: str
    line: int
    reason: str


@dataclass(frozen=True)
class Report:
    """Why ligands failed (grouped by reason), what the library's validation skipped, the
    CPU spent and the best hits."""

    job: Job
    failures: List[FailureGroup]
    skipped: List[SkippedRecord]
    cpu_seconds: float
    top_hits: List[Dict[str, Any]]

    @classmethod
    def from_proto(cls, r: job_pb2.JobReport) -> "Report":
        return cls(
            job=Job.from_proto(r.job),
            failures=[FailureGroup(f.kind, f.reason, f.count, list(f.examples), f.stage) for f in r.failures],
            skipped=[SkippedRecord(s.file, s.record, s.name, s.line, s.reason) for s in r.skipped],
            cpu_seconds=r.cpu_seconds,
            top_hits=[result_row(h) for h in r.top_hits],
        )


@dataclass(frozen=True)
class Node:
    node_id: str
    state: str
    hostname: str
    slots: int
    free_slots: int
    memory_bytes: int
    free_memory_bytes: int
    gpus: int
    engines: Dict[str, str]
    tools: Dict[str, str]
    running: List[str]
    labels: Dict[str, str]
    agent_version: str
    last_seen: Optional[datetime]

    @classmethod
    def from_proto(cls, n: admin_pb2.Node) -> "Node":
        return cls(
            node_id=n.node_id,
            state=_NODE_STATES.get(n.state, "unknown"),
            hostname=n.hostname,
            slots=n.capacity.cpu_slots,
            free_slots=n.free_slots,
            memory_bytes=n.capacity.memory_bytes,
            free_memory_bytes=n.free_memory_bytes,
            gpus=len(n.capacity.gpus),
            engines={e.name: e.version for e in n.engines},
            tools={e.name: e.version for e in n.tools},
            running=[t.task_id for t in n.running],
            labels=dict(n.labels),
            agent_version=n.agent_version,
            last_seen=_time(n.last_seen_ms),
        )


@dataclass(frozen=True)
class NewToken:
    """A token just made: `token` is the secret, shown only this once."""

    token_id: str
    token: str
    org: str


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    org: str
    admin: bool
    description: str
    created_at: Optional[datetime]
    revoked: bool
    expires_at: Optional[datetime]

    @classmethod
    def from_proto(cls, t: admin_pb2.TokenInfo) -> "TokenInfo":
        return cls(t.token_id, t.org, t.admin, t.description, _time(t.created_at_ms), t.revoked, _time(t.expires_at_ms))


@dataclass(frozen=True)
class Quota:
    """An organisation's limits (0: none) and its current use."""

    org: str
    max_queued_tasks: int
    max_running_tasks: int
    max_bytes_stored: int
    max_running_share_pct: int
    queued_tasks: int
    running_tasks: int
    bytes_stored: int

    @classmethod
    def from_proto(cls, q: admin_pb2.Quota) -> "Quota":
        return cls(
            q.org,
            q.max_queued_tasks,
            q.max_running_tasks,
            q.max_bytes_stored,
            q.max_running_share_pct,
            q.queued_tasks,
            q.running_tasks,
            q.bytes_stored,
        )


@dataclass
class Stage:
    """One stage of a funnel, as `dockyard submit --stage` spells it. The first docks the
    library; each later one takes the best of the one before: `keep` is a number of
    ligands (500) or a share ("10%"), `max_score` a score cut-off. Unset fields take the
    job's values."""

    name: Optional[str] = None
    engine: Optional[str] = None
    exhaustiveness: Optional[int] = None
    num_modes: Optional[int] = None
    seed: Optional[int] = None
    scoring: Optional[str] = None
    mode: Optional[str] = None
    cnn_scoring: Optional[str] = None
    cnn_model: Optional[str] = None
    search_mode: Optional[str] = None
    no_gpu: bool = False
    gpus: Optional[int] = None
    cpus_per_task: Optional[int] = None
    batch_size: Optional[int] = None
    timeout_s: Optional[int] = None
    rank_by: Optional[str] = None
    keep: Union[int, str, None] = None
    max_score: Optional[float] = None
    receptor: Optional[str] = None
    center: Optional[List[float]] = None
    size: Optional[List[float]] = None


def result_row(r: job_pb2.LigandResult) -> Dict[str, Any]:
    """One result as a flat row: the ligand, its score and poses, and every engine field."""
    row: Dict[str, Any] = {
        "ligand": r.ligand,
        "index": r.ligand_index,
        "smiles": r.smiles or None,
        "score": r.score,
        "poses": len(r.poses),
        "pose_key": r.pose_key,
        "sdf_key": r.sdf_key or None,
        "log_key": r.log_key or None,
        "cached": r.cached,
    }
    for k in sorted(r.fields):
        row[k] = r.fields[k]
    return row
