"""Python client for Dockyard, the docking cluster.

    import dockyard
    c = dockyard.Client()            # DOCKYARD_ENDPOINT / DOCKYARD_TOKEN / DOCKYARD_TLS_CA
    job = c.submit(receptor="rec.pdbqt", smiles=["CCO", "c1ccccc1O"],
                   center=(15.19, 53.90, 16.92), size=(20, 20, 20))
    c.wait(job, progress=True)
    print(c.results(job, top=10))

`dockyard.aio.Client` is the same API for asyncio.
"""

from .client import Client
from .errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    DockyardError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from .types import FINAL_STATES, Job, JobEvent, NewToken, Node, Quota, Report, Stage, TaskCounts, TokenInfo

__version__ = "0.1.0"

__all__ = [
    "Client",
    "DockyardError",
    "AlreadyExists",
    "Cancelled",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "FINAL_STATES",
    "Job",
    "JobEvent",
    "NewToken",
    "Node",
    "Quota",
    "Report",
    "Stage",
    "TaskCounts",
    "TokenInfo",
]
