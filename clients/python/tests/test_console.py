"""The coordinator's web console in a real browser (headless Chromium driven by
Playwright), checked as a person would use it. Screenshots go to DOCKYARD_SCREENSHOTS if
set (the ones in docs/ were made that way)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import dockyard
from conftest import BOX, RECEPTOR, Cluster, binary, free_port, wait_listening

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian chromium"),
    pytest.mark.skipif(shutil.which("vina") is None, reason="needs the real vina (Debian autodock-vina)"),
]

LIGANDS = [
    ("Oc1ccc(cc1)-c1coc2cc(O)cc(O)c2c1=O", "genistein"),
    ("CSc1cccc(Nc2ncc3cc(-c4c(Cl)cccc4Cl)c(=O)n(C)c3n2)c1", "pd173955"),
    ("Cc1cc(Nc2ncc3cc(-c4c(Cl)cccc4Cl)c(=O)n(C)c3n2)ccc1F", "pd180970"),
    ("Cc1ccc(cc1)-c1nn(C(C)(C)C)c2ncnc(N)c12", "pp1"),
    ("Nc1ncnc2c1c(-c1ccc(Cl)cc1)nn2C(C)(C)C", "pp2"),
]


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    d = tmp_path_factory.mktemp("console")
    (d / "admin.secret").write_text("console-admin-secret-0123456789\n")
    (d / "join.secret").write_text("console-join-secret-0123456789\n")
    http = free_port()
    join = ["--join-token-file", str(d / "join.secret")]
    c = Cluster(d, ["--admin-token-file", str(d / "admin.secret"), "--http-listen", f"127.0.0.1:{http}", *join], join)
    c.web = f"http://127.0.0.1:{http}"
    wait_listening(c.endpoint)
    wait_listening(c.web)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def http_status(url: str, token) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def shot(page, name: str) -> None:
    out = os.environ.get("DOCKYARD_SCREENSHOTS")
    if out:
        page.screenshot(path=str(Path(out) / name), full_page=True)


def sign_in(browser, url: str, token: str):
    # bypass_csp: Playwright's polling predicates are evaluated strings, which the page's
    # Content-Security-Policy (no eval) would refuse; the page's own scripts need no eval.
    page = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}, bypass_csp=True).new_page()
    page.goto(url)
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#token", token)
    page.click("#login-form button")
    page.wait_for_selector("#login", state="hidden")
    return page


def test_a_page_without_a_token_asks_for_one(console, browser):
    page = browser.new_context(bypass_csp=True).new_page()
    page.goto(console.web)
    page.wait_for_selector("#login:not([hidden])")
    assert page.locator("#page").inner_text() == ""
    page.fill("#token", "not-a-token")
    page.click("#login-form button")
    page.wait_for_function("document.getElementById('login-error').textContent.includes('refused')")
    page.context.close()


def test_the_console_as_an_admin_and_an_organisation_see_it(console, browser, tmp_path):
    secret = (console.dir / "admin.secret").read_text().strip()
    admin = dockyard.Client(console.endpoint, token=secret)
    console.wait_node(admin)
    chem = admin.create_token("chem")
    other = admin.create_token("other")

    # The node appears on the cluster page, pushed by the server.
    page = sign_in(browser, console.web + "/#/cluster", secret)
    page.wait_for_selector('#nodes tr[data-node="py-agent"]')
    row = page.locator('#nodes tr[data-node="py-agent"]').inner_text()
    assert "ready" in row and "sleep" in row, row

    # A small real screen: the five inhibitors docked by Vina. The node is drained while it
    # is submitted and the job page opened, so the page sees it queued, then move to the end.
    admin.drain("py-agent")
    user = dockyard.Client(console.endpoint, token=chem.token)
    job = user.submit(receptor=str(RECEPTOR), smiles=LIGANDS, **BOX, exhaustiveness=1, num_modes=2, seed=5, batch_size=1)
    page.evaluate("window.__sameDocument = true")
    page.goto(f"{console.web}/#/job/{job}")
    page.wait_for_selector("#job-state.queued")
    admin.undrain("py-agent")
    seen = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        now = (page.inner_text("#job-state"), page.inner_text("#job-progress"))
        if not seen or seen[-1] != now:
            seen.append(now)
        if now[0] == "succeeded":
            break
        time.sleep(0.1)
    assert seen[0] == ("queued", "0 / 5") and seen[-1] == ("succeeded", "5 / 5"), seen
    assert len({p for _, p in seen}) > 2, f"progress did not move through the screen: {seen}"
    assert page.evaluate("window.__sameDocument === true"), "the page reloaded"

    # The histogram counts every result; the hits are drawn from their SMILES.
    page.wait_for_function("document.querySelector('#histogram') && +document.querySelector('#histogram').dataset.count === 5")
    counts = page.eval_on_selector_all("#histogram rect", "rs => rs.map(r => +r.dataset.count)")
    assert sum(counts) == 5, counts
    page.wait_for_function("document.querySelectorAll('#hits tbody tr').length === 5")
    page.wait_for_function("[...document.querySelectorAll('#hits svg.depiction')].every(s => s.dataset.drawn === '1' && s.childElementCount > 0)")
    names = page.eval_on_selector_all("#hits tbody tr", "rs => rs.map(r => r.dataset.ligand)")
    assert sorted(names) == sorted(n for _, n in LIGANDS)
    res = user.results(job)
    assert names == list(res["ligand"]), (names, list(res["ligand"]))
    shot(page, "console-job.png")
    # Sortable by a score column: twice on "score" puts the worst first.
    page.click('#hits th[data-col="score"]')
    page.click('#hits th[data-col="score"]')
    worst_first = page.eval_on_selector_all("#hits tbody tr", "rs => rs.map(r => r.dataset.ligand)")
    assert worst_first == list(reversed(names)), worst_first

    # The CSV download is the CLI's export, byte for byte.
    with page.expect_download() as dl:
        page.click("#download-csv")
    got = Path(dl.value.path()).read_bytes()
    cli = subprocess.run(
        [binary("dockyard"), "--endpoint", console.endpoint, "--token", chem.token, "results", job, "--all", "--format", "csv"],
        capture_output=True,
        check=True,
    ).stdout
    assert got == cli, (got[:300], cli[:300])

    # The SDF download: the poses Vina wrote, the records the Python client assembles.
    with page.expect_download() as dl:
        page.click("#download-sdf")
    sdf_path = Path(dl.value.path())
    assert sdf_path.read_text() == user.poses(job, top=None)
    from rdkit import Chem

    mols = [m for m in Chem.SDMolSupplier(str(sdf_path)) if m is not None]
    assert sorted({m.GetProp("dockyard_ligand") for m in mols}) == sorted(res["ligand"])
    assert len(mols) == int(res["poses"].sum())

    # Another organisation's token sees neither the job nor the cluster pages.
    page2 = sign_in(browser, f"{console.web}/#/job/{job}", other.token)
    page2.wait_for_selector("#job-error")
    assert "No such job" in page2.inner_text("#job-error")
    page2.goto(console.web + "/#/jobs")
    page2.wait_for_selector("#jobs")
    assert job not in page2.inner_text("#jobs")
    assert page2.locator("#nav-cluster").is_hidden()
    # Its own token sees the job in the list.
    page3 = sign_in(browser, console.web + "/#/jobs", chem.token)
    page3.wait_for_selector(f'#jobs tr[data-job="{job}"]')

    # The JSON behind the pages answers as gRPC would: no token 401, an organisation token
    # 403 on the admin calls and 404 on another organisation's job.
    for path, tok, status in [
        (f"/api/jobs/{job}", None, 401),
        ("/api/nodes", chem.token, 403),
        (f"/api/jobs/{job}", other.token, 404),
        (f"/api/jobs/{job}/results.csv", other.token, 404),
        (f"/api/jobs/{job}", chem.token, 200),
    ]:
        assert http_status(console.web + path, tok) == status, (path, status)

    # The jobs list: filtered by state; a running job cancelled from its row.
    page3.goto(console.web + "/#/jobs?state=succeeded")
    page3.wait_for_selector(f'#jobs tr[data-job="{job}"]')
    slow = user.submit(engine="sleep", count=20, sleep_ms=5000)
    page3.goto(console.web + "/#/jobs?state=")
    page3.click(f'#jobs tr[data-job="{slow}"] button')
    assert user.wait(slow, timeout=60).state == "cancelled"
    page3.wait_for_selector(f'#jobs tr[data-job="{slow}"] .state.cancelled')

    # Drain and undrain from the cluster page, as the node's state shows.
    page.goto(console.web + "/#/cluster")
    page.click('#nodes tr[data-node="py-agent"] button')
    page.wait_for_selector('#nodes tr[data-node="py-agent"] .state.draining')
    assert [n.state for n in admin.nodes() if n.node_id == "py-agent"] == ["draining"]
    page.click('#nodes tr[data-node="py-agent"] button')
    page.wait_for_selector('#nodes tr[data-node="py-agent"] .state.ready')

    # Back on the admin's cluster page while a screen runs: the queue and the rate chart.
    admin.submit(engine="sleep", count=60, sleep_ms=300)
    page.goto(console.web + "/#/cluster")
    page.wait_for_function(
        "document.querySelector('#rates polyline') && document.querySelector('#rates polyline').getAttribute('points').split(' ').length >= 6"
    )
    rates = page.eval_on_selector('#rates polyline[data-series="completed"]', "p => p.getAttribute('points')")
    assert rates.count(",") >= 6, rates
    shot(page, "console-cluster.png")
    for p in (page, page2, page3):
        p.context.close()

