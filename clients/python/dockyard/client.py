"""The blocking client. Every call raises a `dockyard.DockyardError` subclass chosen by the
gRPC status (`NotFound`, `InvalidArgument`, `Unauthenticated`, ...) with the coordinator's
message."""

from __future__ import annotations

import time
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import grpc

from . import _submit
from ._shared import (
    CHANNEL_OPTIONS,
    LEADER_WAIT_S,
    PAGE,
    metadata,
    quota_request,
    rdkit_mols,
    read_ca,
    results_frame,
    results_request,
    row_list,
    sdf_records,
    target,
    warn_plain_token,
    watch_failed,
)
from .config import resolve
from .errors import DockyardError, Unavailable, from_rpc_error
from .types import Job, JobEvent, NewToken, Node, Quota, Report, Stage, TokenInfo, result_row
from .v1 import admin_pb2, admin_pb2_grpc, job_pb2, job_pb2_grpc


class Client:
    """A connection to a Dockyard coordinator (the leader, when `endpoint` lists several).

    `endpoint`, `token` and `tls_ca` default to `DOCKYARD_ENDPOINT`, `DOCKYARD_TOKEN` and
    `DOCKYARD_TLS_CA`, then to the TOML file named by `DOCKYARD_CONFIG` (or `config`), as
    for the `dockyard` command; the endpoint defaults to http://127.0.0.1:50051.

        with dockyard.Client() as c:
            job = c.submit(receptor="rec.pdbqt", smiles=["CCO", "c1ccccc1O"],
                           center=(15.2, 53.9, 16.9), size=(20, 20, 20))
            print(c.results(c.wait(job).job_id, top=10))
    """

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
        self._token = s.token
        self._ca = read_ca(s.tls_ca)
        self._timeout = timeout
        self._md = metadata(s.token)
        self.endpoint = leader_endpoint(s.endpoints, s.token, self._ca)
        self._channel = self._open(self.endpoint)
        self._jobs = job_pb2_grpc.JobServiceStub(self._channel)
        self._admin = admin_pb2_grpc.AdminServiceStub(self._channel)

    # -- connection ---------------------------------------------------------------------

    def _open(self, endpoint: str) -> grpc.Channel:
        return open_channel(endpoint, self._token, self._ca)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, method, request, timeout: Optional[float] = None):
        try:
            return method(request, timeout=timeout or self._timeout, metadata=self._md)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    # -- jobs ---------------------------------------------------------------------------

    def submit(
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
        """Submits a docking job and returns its id; the options are those of
        `dockyard submit`.

        Ligands come from `ligands` (a file, a folder, a list of them, or a pandas
        DataFrame with `smiles_column` and `name_column`) and/or `smiles` (a list of SMILES,
        of `(smiles, name)` pairs, a `{name: smiles}` dict, or a DataFrame). Files over
        2 MiB are streamed with UploadInput first. The box is `center` and `size` (x, y, z
        in Ångström), `box` (a dict or a TOML file with both), or `autobox_ligand`.
        `stages` makes a funnel: a list of `dockyard.Stage` (or dicts with its fields).
        """
        req, uploads = _submit.build(**{k: v for k, v in locals().items() if k not in ("self",)})
        for u in uploads:
            r = self._call(self._jobs.UploadInput, u.chunks(), timeout=max(self._timeout, 3600))
            u.target.upload_id = r.upload_id
        return self._call(self._jobs.SubmitJob, req).job_id

    def job(self, job_id: str) -> Job:
        """The job's state and counts."""
        return Job.from_proto(self._call(self._jobs.GetJob, job_pb2.GetJobRequest(job_id=job_id)))

    def jobs(self, org: Optional[str] = None, limit: Optional[int] = 50) -> List[Job]:
        """Jobs, newest first: the newest `limit` (None: every one, page by page)."""
        out: List[Job] = []
        token = ""
        while True:
            size = PAGE if limit is None else min(PAGE, limit - len(out))
            r = self._call(self._jobs.ListJobs, job_pb2.ListJobsRequest(page_size=size, page_token=token, org=org or ""))
            out.extend(Job.from_proto(j) for j in r.jobs)
            token = r.next_page_token
            if not token or (limit is not None and len(out) >= limit):
                return out

    def watch(self, job_id: str, progress: bool = False, timeout: Optional[float] = None) -> Iterator[JobEvent]:
        """Progress events as the coordinator pushes them, ending with the final one.
        `progress=True` draws a tqdm bar of finished ligands (or tasks); after `timeout`
        seconds without the final event, `DeadlineExceeded`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        try:
            while True:
                left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
                stream = self._jobs.WatchJob(job_pb2.WatchJobRequest(job_id=job_id), metadata=self._md, timeout=left)
                try:
                    for ev in stream:
                        e = JobEvent(Job.from_proto(ev.job), ev.final, [result_row(h) for h in ev.top_hits])
                        bar = _progress(bar, e.job) if progress else None
                        yield e
                        if ev.final:
                            return
                except grpc.RpcError as err:
                    watch_failed(err, job_id, timeout)
                # The stream ended before the final event (a coordinator restart or a
                # failover): look again.
                time.sleep(0.5)
                j = self.job(job_id)
                if j.done:
                    yield JobEvent(j, True, [])
                    return
        finally:
            if bar is not None:
                bar.close()

    def wait(self, job_id: str, timeout: Optional[float] = None, progress: bool = False) -> Job:
        """Blocks until the job is final and returns it; `DeadlineExceeded` after `timeout` s."""
        for e in self.watch(job_id, progress=progress, timeout=timeout):
            if e.final:
                return e.job
        return self.job(job_id)

    def cancel(self, job_id: str, reason: str = "") -> Job:
        """Cancels the job's queued and running tasks."""
        return Job.from_proto(self._call(self._jobs.CancelJob, job_pb2.CancelJobRequest(job_id=job_id, reason=reason)))

    def _result_pages(self, job_id: str, top: Optional[int], rank_by: Optional[str], stage: Optional[int]):
        token = ""
        seen = 0
        while True:
            size = PAGE if top is None else min(PAGE, top - seen)
            req = results_request(job_id, size, token, rank_by, stage)
            r = self._call(self._jobs.ListResults, req)
            yield from r.results
            seen += len(r.results)
            token = r.next_page_token
            if not token or (top is not None and seen >= top) or not r.results:
                return

    def results(self, job_id: str, top: Optional[int] = None, rank_by: Optional[str] = None, stage: Optional[int] = None):
        """The job's results as a pandas DataFrame, best first: one row per ligand with its
        rank, name, SMILES, score, pose count, artifact keys and every engine field.
        `top=None` returns every result."""
        return results_frame(row_list(self._result_pages(job_id, top, rank_by, stage)))

    def artifact(self, key: str) -> bytes:
        """One stored object (a pose file, an SDF, an engine log) by its key."""
        try:
            chunks = self._jobs.GetArtifact(job_pb2.GetArtifactRequest(key=key), metadata=self._md, timeout=max(self._timeout, 600))
            return b"".join(c.data for c in chunks)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def poses(self, job_id: str, top: Optional[int] = 10, as_: str = "sdf", rank_by: Optional[str] = None) -> Union[str, list]:
        """The best `top` ligands' poses (None: all) as SDF text (`as_="sdf"`) or RDKit
        molecules (`as_="rdkit"`), each with the scores and engine fields as properties.
        Ligands whose agent wrote no SDF (no Open Babel) are left out."""
        if as_ not in ("sdf", "rdkit"):
            raise ValueError("as_ must be 'sdf' or 'rdkit'")
        parts = []
        for rank, r in enumerate(self._result_pages(job_id, top, rank_by, None), start=1):
            if r.sdf_key:
                parts.append(sdf_records(r, rank, self.artifact(r.sdf_key))[0])
        text = "".join(parts)
        return rdkit_mols(text) if as_ == "rdkit" else text

    def report(self, job_id: str) -> Report:
        """Failures grouped by reason, skipped library records, CPU spent, the best hits."""
        return Report.from_proto(self._call(self._jobs.GetJobReport, job_pb2.GetJobRequest(job_id=job_id)))

    # -- cluster ------------------------------------------------------------------------

    def nodes(self) -> List[Node]:
        """The agents the leader knows, with their capacity, engines and running tasks."""
        return [Node.from_proto(n) for n in self._call(self._admin.ListNodes, admin_pb2.ListNodesRequest()).nodes]

    def drain(self, node_id: str) -> Node:
        """No new tasks for the node; running ones finish (admin)."""
        return Node.from_proto(self._call(self._admin.DrainNode, admin_pb2.DrainNodeRequest(node_id=node_id)))

    def undrain(self, node_id: str) -> Node:
        return Node.from_proto(self._call(self._admin.UndrainNode, admin_pb2.DrainNodeRequest(node_id=node_id)))

    def leader(self) -> Dict[str, Any]:
        r = self._call(self._admin.GetLeader, admin_pb2.GetLeaderRequest())
        return {"endpoint": r.leader_endpoint, "epoch": r.epoch, "coordinator_id": r.coordinator_id, "cluster": r.cluster}

    # -- admin --------------------------------------------------------------------------

    def create_token(self, org: str, description: str = "", admin: bool = False, ttl_s: int = 0) -> NewToken:
        """A new token for `org` (admin); its secret is in the answer only."""
        r = self._call(self._admin.CreateToken, admin_pb2.CreateTokenRequest(org=org, description=description, admin=admin, ttl_s=ttl_s))
        return NewToken(r.token_id, r.token, r.org)

    def revoke_token(self, token_id: str) -> TokenInfo:
        return TokenInfo.from_proto(self._call(self._admin.RevokeToken, admin_pb2.RevokeTokenRequest(token_id=token_id)))

    def tokens(self) -> List[TokenInfo]:
        return [TokenInfo.from_proto(t) for t in self._call(self._admin.ListTokens, admin_pb2.ListTokensRequest()).tokens]

    def set_quota(
        self,
        org: str,
        max_queued_tasks: int = 0,
        max_running_tasks: int = 0,
        max_bytes_stored: int = 0,
        max_running_share_pct: int = 0,
    ) -> Quota:
        """Sets an organisation's limits (0: none)."""
        req = quota_request(org, max_queued_tasks, max_running_tasks, max_bytes_stored, max_running_share_pct)
        return Quota.from_proto(self._call(self._admin.SetQuota, req))

    def quota(self, org: str) -> Quota:
        return Quota.from_proto(self._call(self._admin.GetQuota, admin_pb2.GetQuotaRequest(org=org)))


def open_channel(endpoint: str, token: Optional[str], ca: Optional[bytes]) -> grpc.Channel:
    addr, tls = target(endpoint)
    warn_plain_token(endpoint, token)
    if tls:
        return grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=ca), options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(addr, options=CHANNEL_OPTIONS)


def _ask_leader(endpoint: str, token: Optional[str], ca: Optional[bytes]) -> admin_pb2.LeaderInfo:
    ch = open_channel(endpoint, token, ca)
    try:
        return admin_pb2_grpc.AdminServiceStub(ch).GetLeader(admin_pb2.GetLeaderRequest(), timeout=5, metadata=metadata(token))
    finally:
        ch.close()


def leader_endpoint(endpoints: Sequence[str], token: Optional[str], ca: Optional[bytes]) -> str:
    """The endpoint of the leader among `endpoints` (a standby names it), waiting up to
    15 s while an election is under way, as the CLI does."""
    deadline = time.monotonic() + LEADER_WAIT_S
    while True:
        last: Optional[DockyardError] = None
        for ep in endpoints:
            try:
                info = _ask_leader(ep, token, ca)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    return ep  # a coordinator without GetLeader cannot be a standby
                last = _explain(from_rpc_error(e), ep)
                continue
            if info.this_is_leader:
                return ep
            if info.leader_endpoint:
                # The leader's advertised address may not resolve from here (a container
                # network); the next listed endpoint may be it.
                try:
                    _ask_leader(info.leader_endpoint, token, ca)
                    return info.leader_endpoint
                except grpc.RpcError as e:
                    last = Unavailable(f"{ep} is a standby; its leader {info.leader_endpoint} is unreachable: {e.details()}")
                    continue
            last = Unavailable(f"{ep} is a standby and no leader is elected yet")
        assert last is not None
        if time.monotonic() >= deadline or "no leader" not in last.message:
            raise last
        time.sleep(0.5)


def _explain(e: DockyardError, endpoint: str) -> DockyardError:
    if e.code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(
            f"cannot reach the coordinator at {endpoint} ({e.message}); is it running? set endpoint= or DOCKYARD_ENDPOINT "
            "(a coordinator started with --tls-cert needs https:// and tls_ca=)"
        )
    return e


def _progress(bar, job: Job):
    from tqdm.auto import tqdm

    total = job.ligands_total or job.tasks.total
    done = (job.ligands_docked + job.ligands_failed) if job.ligands_total else job.tasks.finished
    if bar is None:
        bar = tqdm(total=total, desc=job.job_id, unit="ligand" if job.ligands_total else "task")
    bar.total = total
    bar.n = done
    bar.set_postfix_str(job.state + (f" best {job.best_score:.2f}" if job.best_score is not None else ""))
    bar.refresh()
    return bar
