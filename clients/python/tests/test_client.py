"""The client against a real coordinator and agent: what a notebook or a service does."""

from __future__ import annotations

import shutil
import time

import pandas as pd
import pytest

import dockyard
from conftest import BOX, RECEPTOR, admin_secret

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]


@pytest.fixture(scope="session")
def client(cluster):
    c = dockyard.Client(cluster.endpoint)
    cluster.wait_node(c)
    yield c
    c.close()


def test_a_sleep_job_runs_to_the_end_and_its_events_arrive_in_order(client):
    job = client.submit(engine="sleep", count=6, sleep_ms=50, name="py-sleep")
    events = list(client.watch(job))
    assert events[-1].final and events[-1].job.state == "succeeded", events[-1]
    done = [e.job.tasks.succeeded for e in events]
    assert done == sorted(done) and done[-1] == 6, done
    j = client.job(job)
    assert (j.job_id, j.name, j.tasks.total, j.tasks.succeeded, j.done) == (job, "py-sleep", 6, 6, True)
    assert any(x.job_id == job for x in client.jobs(limit=None))


def test_wait_gives_the_final_job_and_times_out_loudly(client):
    job = client.submit(engine="sleep", count=2, sleep_ms=3000)
    with pytest.raises(dockyard.DeadlineExceeded):
        client.wait(job, timeout=0.5)
    assert client.wait(job).state == "succeeded"


def test_cancel_stops_a_job(client):
    job = client.submit(engine="sleep", count=50, sleep_ms=2000)
    j = client.cancel(job, reason="from python")
    final = client.wait(job, timeout=60)
    assert final.state == "cancelled", (j, final)
    assert final.tasks.cancelled > 0 and final.tasks.succeeded < 50


def test_bad_input_raises_invalid_argument_naming_the_field_and_queues_nothing(client, tmp_path):
    before = len(client.jobs(limit=None))
    bad = tmp_path / "receptor.pdbqt"
    bad.write_text("this is not a receptor\n")
    with pytest.raises(dockyard.InvalidArgument) as e:
        client.submit(receptor=str(bad), smiles=["CCO"], **BOX)
    assert e.value.code.name == "INVALID_ARGUMENT"
    assert "receptor" in e.value.message, e.value.message
    with pytest.raises(dockyard.InvalidArgument):
        client.submit(engine="sleep", count=1, priority=42)
    assert len(client.jobs(limit=None)) == before


def test_unknown_job_is_not_found(client):
    with pytest.raises(dockyard.NotFound):
        client.job("0000000000000000dead")


def test_nodes_show_the_agent_and_drain_round_trips(client):
    nodes = {n.node_id: n for n in client.nodes()}
    n = nodes["py-agent"]
    assert n.slots == 2 and "sleep" in n.engines, n
    assert client.drain("py-agent").state == "draining"
    assert client.undrain("py-agent").state == "ready"


@pytest.mark.skipif(shutil.which("vina") is None, reason="needs the real vina (Debian autodock-vina)")
def test_a_real_vina_screen_from_a_dataframe_gives_results_and_rdkit_poses(client):
    df = pd.DataFrame({"smiles": SMILES, "name": ["ethanol", "phenol", "paracetamol"]})
    job = client.submit(receptor=str(RECEPTOR), ligands=df, **BOX, exhaustiveness=1, num_modes=2, seed=7, fresh=True)
    final = client.wait(job, timeout=600)
    assert final.state == "succeeded", client.report(job)
    res = client.results(job)
    assert list(res["ligand"]) != [] and set(res["ligand"]) == {"ethanol", "phenol", "paracetamol"}, res
    assert list(res["rank"]) == [1, 2, 3]
    assert res["score"].is_monotonic_increasing, res["score"]
    assert (res["score"] < 0).all()
    assert set(res["smiles"]) == set(SMILES)
    top = client.results(job, top=1)
    assert len(top) == 1 and top["ligand"][0] == res["ligand"][0]
    # The poses are the ones the engine wrote, with the scores attached.
    mols = client.poses(job, top=None, as_="rdkit")
    assert len(mols) >= 3
    by_name = {}
    for m in mols:
        by_name.setdefault(m.GetProp("dockyard_ligand"), []).append(m)
    assert set(by_name) == {"ethanol", "phenol", "paracetamol"}
    for name, ms in by_name.items():
        row = res[res["ligand"] == name].iloc[0]
        assert ms[0].GetDoubleProp("dockyard_best_score") == pytest.approx(row["score"], abs=1e-3)
        assert ms[0].GetNumAtoms() > 0
    sdf = client.poses(job, top=1)
    assert sdf.count("$$$$") >= 1 and "dockyard_affinity" in sdf
    report = client.report(job)
    assert report.job.ligands_docked == 3 and not report.failures


def test_smiles_list_is_sent_as_a_library(client, cluster):
    # The sleep engine takes a library only in a funnel: two stages, the second keeps one.
    job = client.submit(
        receptor=str(RECEPTOR),
        smiles=[("CCO", "a"), ("CCN", "b"), ("CCC", "c")],
        **BOX,
        engine="sleep",
        stages=[dockyard.Stage(name="dock"), {"name": "keep", "keep": 1}],
    )
    j = client.wait(job, timeout=120)
    assert j.state == "succeeded" and j.ligands_total == 3, j
    assert [s.name for s in j.stages] == ["dock", "keep"]
    assert j.stages[1].ligands_in == 1


def test_a_token_protected_coordinator_over_tls(secure, tmp_path, monkeypatch):
    ca = str(secure.dir / "ca.pem")
    admin = dockyard.Client(secure.endpoint, token=admin_secret(secure), tls_ca=ca)
    secure.wait_node(admin)
    chem = admin.create_token("chem", description="python test")
    assert chem.org == "chem" and chem.token
    assert any(t.token_id == chem.token_id for t in admin.tokens())
    q = admin.set_quota("chem", max_queued_tasks=1000)
    assert admin.quota("chem").max_queued_tasks == 1000 == q.max_queued_tasks

    # The same settings from the environment, as the CLI reads them.
    monkeypatch.setenv("DOCKYARD_ENDPOINT", secure.endpoint)
    monkeypatch.setenv("DOCKYARD_TOKEN", chem.token)
    monkeypatch.setenv("DOCKYARD_TLS_CA", ca)
    user = dockyard.Client()
    job = user.submit(engine="sleep", count=2, sleep_ms=10)
    assert user.wait(job, timeout=60).org == "chem"
    with pytest.raises(dockyard.PermissionDenied):
        user.create_token("other")

    # ... and from a config file.
    for k in ("DOCKYARD_ENDPOINT", "DOCKYARD_TOKEN", "DOCKYARD_TLS_CA"):
        monkeypatch.delenv(k)
    cfg = tmp_path / "dockyard.toml"
    cfg.write_text(f'endpoint = "{secure.endpoint}"\ntoken = "{chem.token}"\ntls_ca = "{ca}"\n')
    monkeypatch.setenv("DOCKYARD_CONFIG", str(cfg))
    assert dockyard.Client().job(job).state == "succeeded"
    monkeypatch.delenv("DOCKYARD_CONFIG")

    with pytest.raises(dockyard.Unauthenticated):
        dockyard.Client(secure.endpoint, token="not-a-token", tls_ca=ca).jobs()
    with pytest.raises(dockyard.Unauthenticated):
        dockyard.Client(secure.endpoint, tls_ca=ca).jobs()
    # A CA that did not sign the server's certificate: the TLS handshake fails.
    with pytest.raises(dockyard.Unavailable):
        dockyard.Client(secure.endpoint, token=chem.token, tls_ca=str(RECEPTOR)).jobs()
    admin.revoke_token(chem.token_id)
    with pytest.raises(dockyard.Unauthenticated):
        user.job(job)


def test_several_endpoints_find_the_one_that_answers(cluster):
    dead = "http://127.0.0.1:9"
    with pytest.raises(dockyard.Unavailable) as e:
        dockyard.Client(dead)
    assert "cannot reach the coordinator" in e.value.message
    c = dockyard.Client(f"{dead},{cluster.endpoint}")
    assert c.endpoint == cluster.endpoint
    t = time.monotonic()
    assert c.leader()["endpoint"]
    assert time.monotonic() - t < 5


@pytest.mark.skipif(shutil.which("vina") is None, reason="needs the real vina (Debian autodock-vina)")
def test_the_python_example_runs(cluster, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = dict(os.environ, DOCKYARD_ENDPOINT=cluster.endpoint)
    r = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python" / "screen.py"), "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for png in ("scores.png", "top_hits.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    hits = pd.read_csv(tmp_path / "hits.csv")
    assert sorted(hits["ligand"]) == ["genistein", "pd173955", "pd180970", "pp1", "pp2"]
    assert (hits["score"] < 0).all() and hits["score"].is_monotonic_increasing
    assert hits["ligand"][0] in r.stdout


def test_a_folder_of_libraries_and_a_streamed_upload(client, tmp_path, monkeypatch, capsys):
    # Files over the inline limit go through UploadInput; lowered here so small files do.
    from dockyard import _submit

    monkeypatch.setattr(_submit, "INLINE_MAX", 64)
    lib = tmp_path / "libs"
    lib.mkdir()
    (lib / "a.smi").write_text("".join(f"{'C' * (i % 4 + 1)} a{i}\n" for i in range(30)))
    (lib / "b.smi").write_text("CCO b0\nCCN b1\n")
    (lib / "notes.txt").write_text("not a library")
    job = client.submit(
        receptor=str(RECEPTOR),
        ligands=str(lib),
        **BOX,
        engine="sleep",
        batch_size=8,
        stages=[{"name": "dock"}, {"name": "keep", "keep": "10%"}],
    )
    j = client.wait(job, timeout=120, progress=True)
    assert j.state == "succeeded" and j.ligands_total == 32, j
    assert j.stages[1].ligands_in == 4, j.stages
    # tqdm drew its bar on stderr, ending at the ligands docked.
    assert job in capsys.readouterr().err
    with pytest.raises(dockyard.DockyardError) as e:
        client.submit(receptor=str(RECEPTOR), ligands=str(tmp_path / "missing"), **BOX)
    assert "no such file" in str(e.value)
