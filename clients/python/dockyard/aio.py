"""The asyncio client: the same calls as `dockyard.Client`, as coroutines (and `watch` as
an async iterator), for services built on asyncio.

    async with dockyard.aio.Client() as c:
        job = await c.submit(engine="vina", receptor="rec.pdbqt", smiles=smiles, center=..., size=...)
        async for event in c.watch(job):
            print(event.job.ligands_docked)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Sequence, Union

import grpc
import grpc.aio

from . import _submit
from ._shared import (
    CHANNEL_OPTIONS,
    PAGE,
    metadata,
    quota_request,
    rdkit_mols,
    read_ca,
    results_frame,
    results_request,
    sdf_records,
    target,
    warn_plain_token,
    watch_failed,
)
from .client import leader_endpoint
from .config import resolve
from .errors import from_rpc_error
from .types import Job, JobEvent, NewToken, Node, Quota, Report, Stage, TokenInfo, result_row
from .v1 import admin_pb2, admin_pb2_grpc, job_pb2, job_pb2_grpc


class Client:
    """Settings as for `dockyard.Client`; the connection (and the leader lookup) is made on
    the first call, or by `await client.connect()`."""

    def __init__(
        self,
        endpoint: Optional[str] = None,
        token: Optional[str] = None,
        tls_ca: Optional[str] = None,
        *,
        config: Optional[str] = None,
        timeout: float = 60.0,
    ):
        s = resolve(endpoint, token, tls_ca, config)
        self._endpoints = s.endpoints
        self._token = s.token
        self._ca = read_ca(s.tls_ca)
        self._timeout = timeout
        self._md = metadata(s.token)
        self._channel: Optional[grpc.aio.Channel] = None
        self._lock = asyncio.Lock()
        self.endpoint: Optional[str] = None

    def _open(self, endpoint: str) -> grpc.aio.Channel:
        addr, tls = target(endpoint)
        warn_plain_token(endpoint, self._token)
        if tls:
            return grpc.aio.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=self._ca), options=CHANNEL_OPTIONS)
        return grpc.aio.insecure_channel(addr, options=CHANNEL_OPTIONS)

    async def connect(self) -> "Client":
        async with self._lock:
            if self._channel is None:
                # The lookup is a few unary calls, made once: the blocking client's, in a thread.
                self.endpoint = await asyncio.to_thread(leader_endpoint, self._endpoints, self._token, self._ca)
                self._channel = self._open(self.endpoint)
                self._jobs = job_pb2_grpc.JobServiceStub(self._channel)
                self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)
        return self

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def __aenter__(self) -> "Client":
        return await self.connect()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _call(self, name: str, request, timeout: Optional[float] = None, admin: bool = False):
        await self.connect()
        stub = self._admin if admin else self._jobs
        try:
            return await getattr(stub, name)(request, timeout=timeout or self._timeout, metadata=self._md)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def submit(
        self,
        receptor: Optional[str] = None,
        ligands: Any = None,
        *,
        smiles: Any = None,
        smiles_column: str = "smiles",
        name_column: Optional[str] = "name",
        center: Optional[Sequence[float]] = None,
        size: Optional[Sequence[float]] = None,
        box: Any = None,
        autobox_ligand: Optional[str] = None,
        autobox_add: Optional[float] = None,
        engine: str = "vina",
        exhaustiveness: Optional[int] = None,
        num_modes: Optional[int] = None,
        seed: Optional[int] = None,
        priority: int = 0,
        batch_size: Optional[int] = None,
        max_attempts: Optional[int] = None,
        timeout_s: Optional[int] = None,
        name: Optional[str] = None,
        gpus: Optional[int] = None,
        cpus_per_task: Optional[int] = None,
        scoring: Optional[str] = None,
        mode: Optional[str] = None,
        cnn_scoring: Optional[str] = None,
        cnn_model: Optional[str] = None,
        no_gpu: bool = False,
        prepare: Optional[str] = None,
        protonate: bool = False,
        search_mode: Optional[str] = None,
        fresh: bool = False,
        skip_invalid: bool = False,
        count: Optional[int] = None,
        sleep_ms: Optional[int] = None,
        stages: Optional[Sequence[Union[Stage, Mapping[str, Any]]]] = None,
        labels: Optional[Mapping[str, str]] = None,
    ) -> str:
        """As `dockyard.Client.submit`."""
        req, uploads = _submit.build(**{k: v for k, v in locals().items() if k != "self"})
        for u in uploads:
            r = await self._call("UploadInput", _aiter(u.chunks()), timeout=max(self._timeout, 3600))
            u.target.upload_id = r.upload_id
        return (await self._call("SubmitJob", req)).job_id

    async def job(self, job_id: str) -> Job:
        return Job.from_proto(await self._call("GetJob", job_pb2.GetJobRequest(job_id=job_id)))

    async def jobs(self, org: Optional[str] = None, limit: Optional[int] = 50) -> List[Job]:
        out: List[Job] = []
        token = ""
        while True:
            size = PAGE if limit is None else min(PAGE, limit - len(out))
            r = await self._call("ListJobs", job_pb2.ListJobsRequest(page_size=size, page_token=token, org=org or ""))
            out.extend(Job.from_proto(j) for j in r.jobs)
            token = r.next_page_token
            if not token or (limit is not None and len(out) >= limit):
                return out

    async def watch(self, job_id: str, timeout: Optional[float] = None) -> AsyncIterator[JobEvent]:
        """Progress events as the coordinator pushes them, ending with the final one."""
        await self.connect()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            call = self._jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job_id), metadata=self._md, timeout=left)
            try:
                async for ev in call:
                    yield JobEvent(Job.from_proto(ev.job), ev.final, [result_row(h) for h in ev.top_hits])
                    if ev.final:
                        return
            except grpc.RpcError as err:
                watch_failed(err, job_id, timeout)
            await asyncio.sleep(0.5)
            j = await self.job(job_id)
            if j.done:
                yield JobEvent(j, True, [])
                return

    async def wait(self, job_id: str, timeout: Optional[float] = None) -> Job:
        async for e in self.watch(job_id, timeout=timeout):
            if e.final:
                return e.job
        return await self.job(job_id)

    async def cancel(self, job_id: str, reason: str = "") -> Job:
        return Job.from_proto(await self._call("CancelJob", job_pb2.CancelJobRequest(job_id=job_id, reason=reason)))

    async def _result_pages(self, job_id: str, top: Optional[int], rank_by: Optional[str], stage: Optional[int]):
        out: List[job_pb2.LigandResult] = []
        token = ""
        while True:
            size = PAGE if top is None else min(PAGE, top - len(out))
            req = results_request(job_id, size, token, rank_by, stage)
            r = await self._call("ListResults", req)
            out.extend(r.results)
            token = r.next_page_token
            if not token or (top is not None and len(out) >= top) or not r.results:
                return out

    async def results(self, job_id: str, top: Optional[int] = None, rank_by: Optional[str] = None, stage: Optional[int] = None):
        """As `dockyard.Client.results`: a DataFrame, best first."""
        return results_frame([result_row(r) for r in await self._result_pages(job_id, top, rank_by, stage)])

    async def artifact(self, key: str) -> bytes:
        await self.connect()
        try:
            call = self._jobs.GetArtifact(job_pb2.GetArtifactRequest(key=key), metadata=self._md, timeout=max(self._timeout, 600))
            return b"".join([c.data async for c in call])
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def poses(self, job_id: str, top: Optional[int] = 10, as_: str = "sdf", rank_by: Optional[str] = None) -> Union[str, list]:
        """As `dockyard.Client.poses`."""
        if as_ not in ("sdf", "rdkit"):
            raise ValueError("as_ must be 'sdf' or 'rdkit'")
        parts = []
        for rank, r in enumerate(await self._result_pages(job_id, top, rank_by, None), start=1):
            if r.sdf_key:
                parts.append(sdf_records(r, rank, await self.artifact(r.sdf_key))[0])
        text = "".join(parts)
        return rdkit_mols(text) if as_ == "rdkit" else text

    async def report(self, job_id: str) -> Report:
        return Report.from_proto(await self._call("GetJobReport", job_pb2.GetJobRequest(job_id=job_id)))

    async def nodes(self) -> List[Node]:
        return [Node.from_proto(n) for n in (await self._call("ListNodes", admin_pb2.ListNodesRequest(), admin=True)).nodes]

    async def drain(self, node_id: str) -> Node:
        return Node.from_proto(await self._call("DrainNode", admin_pb2.DrainNodeRequest(node_id=node_id), admin=True))

    async def undrain(self, node_id: str) -> Node:
        return Node.from_proto(await self._call("UndrainNode", admin_pb2.DrainNodeRequest(node_id=node_id), admin=True))

    async def leader(self) -> Dict[str, Any]:
        r = await self._call("GetLeader", admin_pb2.GetLeaderRequest(), admin=True)
        return {"endpoint": r.leader_endpoint, "epoch": r.epoch, "coordinator_id": r.coordinator_id, "cluster": r.cluster}

    async def create_token(self, org: str, description: str = "", admin: bool = False, ttl_s: int = 0) -> NewToken:
        r = await self._call("CreateToken", admin_pb2.CreateTokenRequest(org=org, description=description, admin=admin, ttl_s=ttl_s), admin=True)
        return NewToken(r.token_id, r.token, r.org)

    async def revoke_token(self, token_id: str) -> TokenInfo:
        return TokenInfo.from_proto(await self._call("RevokeToken", admin_pb2.RevokeTokenRequest(token_id=token_id), admin=True))

    async def tokens(self) -> List[TokenInfo]:
        return [TokenInfo.from_proto(t) for t in (await self._call("ListTokens", admin_pb2.ListTokensRequest(), admin=True)).tokens]

    async def set_quota(
        self,
        org: str,
        max_queued_tasks: int = 0,
        max_running_tasks: int = 0,
        max_bytes_stored: int = 0,
        max_running_share_pct: int = 0,
    ) -> Quota:
        req = quota_request(org, max_queued_tasks, max_running_tasks, max_bytes_stored, max_running_share_pct)
        return Quota.from_proto(await self._call("SetQuota", req, admin=True))

    async def quota(self, org: str) -> Quota:
        return Quota.from_proto(await self._call("GetQuota", admin_pb2.GetQuotaRequest(org=org), admin=True))


async def _aiter(it):
    for x in it:
        yield x
