"""What the blocking and the asyncio clients share: channels, the bearer token, leader
lookup's rules, and turning pages of results into a DataFrame or an SDF."""

from __future__ import annotations

import ipaddress
import re
import threading
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import grpc

from .errors import DeadlineExceeded, DockyardError, from_rpc_error
from .types import result_row
from .v1 import job_pb2

MAX_MESSAGE = 64 << 20
PAGE = 1000
LEADER_WAIT_S = 15.0
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]

_warned = threading.Event()


def target(endpoint: str) -> Tuple[str, bool]:
    """`host:port` for grpc, and whether the endpoint wants TLS."""
    u = urlsplit(endpoint)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise DockyardError(f"'{endpoint}' is not a coordinator endpoint; use a URL like http://127.0.0.1:50051")
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    port = u.port or (443 if u.scheme == "https" else 80)
    return f"{host}:{port}", u.scheme == "https"


def read_ca(tls_ca: Optional[str]) -> Optional[bytes]:
    if not tls_ca:
        return None
    try:
        with open(tls_ca, "rb") as f:
            return f.read()
    except OSError as e:
        raise DockyardError(f"cannot read the TLS CA file {tls_ca} (tls_ca / DOCKYARD_TLS_CA): {e.strerror}") from None


def warn_plain_token(endpoint: str, token: Optional[str]) -> None:
    """Warns once per process when a token would cross the network in clear text."""
    if not token or _warned.is_set():
        return
    u = urlsplit(endpoint)
    if u.scheme != "http" or not u.hostname:
        return
    host = u.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host.lower() == "localhost"
    if not loopback:
        _warned.set()
        warnings.warn(
            f"your bearer token goes to {host} over plain http://, readable by anyone on the way; "
            "serve the coordinator with --tls-cert and use https://",
            stacklevel=4,
        )


def metadata(token: Optional[str]) -> Sequence[Tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def watch_failed(err: grpc.RpcError, job_id: str, timeout: Optional[float]) -> None:
    """Raises what a broken WatchJob stream means; returns when it is worth watching again
    (the coordinator restarted, or a failover)."""
    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise DeadlineExceeded(f"job {job_id} is not final after {timeout} s") from None
    if err.code() != grpc.StatusCode.UNAVAILABLE:
        raise from_rpc_error(err) from None


def results_request(job_id: str, size: int, token: str, rank_by: Optional[str], stage: Optional[int]) -> job_pb2.ListResultsRequest:
    return job_pb2.ListResultsRequest(job_id=job_id, page_size=size, page_token=token, rank_by=rank_by or "", stage=stage or 0)


def quota_request(org: str, max_queued_tasks: int, max_running_tasks: int, max_bytes_stored: int, max_running_share_pct: int):
    from .v1 import admin_pb2

    return admin_pb2.SetQuotaRequest(
        org=org,
        max_queued_tasks=max_queued_tasks,
        max_running_tasks=max_running_tasks,
        max_bytes_stored=max_bytes_stored,
        max_running_share_pct=max_running_share_pct,
    )


def results_frame(rows: List[Dict[str, Any]]):
    """One row per ligand, best first, with a 1-based rank."""
    import pandas as pd

    base = ["rank", "ligand", "index", "smiles", "score", "poses", "pose_key", "sdf_key", "log_key", "cached"]
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    extra = sorted({k for r in rows for k in r} - set(base))
    return pd.DataFrame(rows, columns=base + extra)


def sdf_records(r: job_pb2.LigandResult, rank: int, sdf: bytes) -> Tuple[str, int]:
    """One ligand's poses as SDF records, each carrying the scores as data fields (the
    same fields as `dockyard results --format sdf`)."""
    text = sdf.decode("utf-8", "replace")
    out = []
    records = [rec.rstrip() for rec in text.split("$$$$") if rec.strip()]
    for pose_i, rec in enumerate(records):
        rec = rec.lstrip("\r\n")
        # A data item the engine's SDF ends with needs its closing blank line back, or the
        # next field would read as part of its value.
        lines = [rec if rec.endswith("M  END") else rec + "\n"]

        def field(k: str, v: str) -> None:
            lines.append(f">  <{k}>\n{v}\n")

        field("dockyard_ligand", r.ligand)
        field("dockyard_rank", str(rank))
        field("dockyard_pose", str(pose_i + 1))
        if pose_i < len(r.poses):
            field("dockyard_affinity", f"{r.poses[pose_i].affinity:.3f}")
        field("dockyard_best_score", f"{r.score:.3f}")
        if r.smiles:
            field("dockyard_smiles", r.smiles)
        # The ligand's fields are its best pose's: a pose record with a field of its own
        # keeps that value, not a second one of the same name (as the CLI does).
        own = {m.group(1) for m in (re.search(r"<([^>]*)>", l) for l in rec.splitlines() if l.startswith(">")) if m}
        for k in sorted(set(r.fields) - own):
            field(k, _rust_float(r.fields[k]))
        out.append("\n".join(lines) + "\n$$$$\n")
    return "".join(out), len(records)


def _rust_float(v: float) -> str:
    """A number as the CLI and the console write it (Rust's `{}`: no exponent, no `.0`), so
    the three SDF exports agree."""
    import math

    import numpy as np

    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return np.format_float_positional(v, trim="-")


def rdkit_mols(sdf_text: str) -> list:
    """The SDF's records as RDKit molecules; the data fields become properties (numbers
    where they parse as numbers)."""
    from rdkit import Chem

    mols = []
    supplier = Chem.SDMolSupplier()
    supplier.SetData(sdf_text, sanitize=True, removeHs=False)
    for m in supplier:
        if m is None:
            continue
        for k in list(m.GetPropNames()):
            v = m.GetProp(k)
            try:
                m.SetDoubleProp(k, float(v))
            except ValueError:
                pass
        mols.append(m)
    return mols


def row_list(results: Iterable[job_pb2.LigandResult]) -> List[Dict[str, Any]]:
    return [result_row(r) for r in results]
