"""Several coordinators in cluster mode (a real etcd): the client finds the leader from any
of them, as the CLI does."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

import dockyard
from conftest import binary, free_port, wait_listening


@pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (Debian etcd-server)")
def test_a_standby_names_the_leader(tmp_path):
    client_port, peer_port = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    procs = [
        subprocess.Popen(
            [
                "etcd",
                "--data-dir",
                str(tmp_path / "etcd"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer_port}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer_port}",
                "--log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "etcd.log", "wb"),
        )
    ]
    endpoints = []
    try:
        wait_listening(etcd_url)
        for i in range(2):
            port = free_port()
            endpoints.append(f"http://127.0.0.1:{port}")
            procs.append(
                subprocess.Popen(
                    [
                        binary("dockyard-coordinator"),
                        "--listen",
                        f"127.0.0.1:{port}",
                        "--data-dir",
                        str(tmp_path / f"c{i}"),
                        "--etcd",
                        etcd_url,
                        "--cluster",
                        "pytest",
                        "--artifacts",
                        f"file://{tmp_path / 'artifacts'}",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=open(tmp_path / f"c{i}.log", "wb"),
                )
            )
            wait_listening(endpoints[-1])
        # Each coordinator alone leads the client to the same one: the leader.
        deadline = time.monotonic() + 30
        while True:
            try:
                found = {ep: dockyard.Client(ep).endpoint for ep in endpoints}
                break
            except dockyard.Unavailable:
                assert time.monotonic() < deadline, "no leader elected in 30 s"
                time.sleep(0.5)
        leaders = set(found.values())
        assert len(leaders) == 1 and leaders <= set(endpoints), found
        standby = next(ep for ep in endpoints if ep not in leaders)
        c = dockyard.Client(standby)
        assert c.leader()["cluster"] == "pytest"
        job = c.submit(engine="sleep", count=1, sleep_ms=1)
        assert c.job(job).job_id == job
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
