// Dockyard web console: plain JavaScript, no build step. Data comes from /api/* (the
// coordinator's gRPC services, called with this page's token); live pages read server-sent
// events through fetch, so the token travels in a header, never in a URL.
"use strict";

const TOKEN_KEY = "dockyard-token";
const state = { session: null, live: null, chart: [] };

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
function headers() { const t = token(); return t ? { Authorization: "Bearer " + t } : {}; }

class ApiError extends Error {
  constructor(status, body) { super(body && body.message ? body.message : "HTTP " + status); this.status = status; }
}

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...headers(), ...(opts.headers || {}) } });
  if (!r.ok) {
    let body = null;
    try { body = await r.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(r.status, body);
  }
  return r;
}
const getJson = async (path, opts) => (await api(path, opts)).json();

// Server-sent events over fetch; calls onEvent(name, data) until the stream ends or `signal` aborts.
async function sse(path, onEvent, signal) {
  const r = await api(path, { signal });
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let name = "message";
      const data = [];
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// Elements, built with textContent only: names and SMILES come from users.
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids.flat()) e.append(k instanceof Node ? k : document.createTextNode(k === null || k === undefined ? "" : String(k)));
  return e;
}
const fmt = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? "n/a" : Number(x).toFixed(d));
const page = () => document.getElementById("page");

function stopLive() { if (state.live) { state.live.abort(); state.live = null; } }

function showLogin(why) {
  stopLive();
  document.getElementById("login").hidden = false;
  document.getElementById("page").replaceChildren();
  document.getElementById("login-error").textContent = why || "";
}

async function startSession() {
  try {
    state.session = await getJson("/api/session");
  } catch (e) {
    if (e.status === 401) { showLogin(token() ? "That token was refused: " + e.message : ""); return false; }
    throw e;
  }
  document.getElementById("login").hidden = true;
  document.getElementById("nav-cluster").hidden = !state.session.admin;
  document.getElementById("forget").hidden = !token();
  document.getElementById("who").textContent = (state.session.admin ? "admin" : "organisation token") +
    (state.session.cluster ? " · cluster " + state.session.cluster : "");
  return true;
}

// Ligands done (or tasks, for a job without ligands) and how many there are.
function progress(j) {
  if (j.ligands_total) return [j.ligands_docked + j.ligands_failed, j.ligands_total];
  return [j.tasks.succeeded + j.tasks.failed + j.tasks.cancelled, j.tasks.total];
}

function bar(done, total) {
  const pct = total > 0 ? Math.min(100, (100 * done) / total) : 0;
  return el("span", { class: "bar", title: `${done} / ${total}` }, el("span", { style: `width:${pct}%` }));
}

// ---- cluster ----------------------------------------------------------------------------

function nodeRow(n) {
  const used = n.slots - n.free_slots;
  const actions = n.state === "draining"
    ? el("button", { onclick: () => drain(n.node_id, false) }, "undrain")
    : el("button", { onclick: () => drain(n.node_id, true) }, "drain");
  return el("tr", { "data-node": n.node_id },
    el("td", {}, n.node_id), el("td", {}, el("span", { class: "state " + n.state }, n.state)),
    el("td", { class: "num" }, `${used} / ${n.slots}`),
    el("td", { class: "num" }, `${(n.free_memory_bytes / 2 ** 30).toFixed(1)} / ${(n.memory_bytes / 2 ** 30).toFixed(1)} GiB`),
    el("td", { class: "num" }, n.gpus.length),
    el("td", {}, n.engines.map((e) => e.name).join(", ")),
    el("td", {}, n.tools.map((e) => e.name).join(", ")),
    el("td", { class: "num" }, n.running.length),
    el("td", {}, n.state === "lost" ? "" : actions));
}

async function drain(id, on) {
  await api(`/api/nodes/${encodeURIComponent(id)}/${on ? "drain" : "undrain"}`, { method: "POST" });
}

// An empty chart: an <svg> of W x H with this id.
function chartSvg(id, W, H) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("id", id);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  return svg;
}

function rateChart(points) {
  const W = 520, H = 140, P = 28;
  const svg = chartSvg("rates", W, H);
  const max = Math.max(1, ...points.map((p) => Math.max(p.dispatched, p.completed)));
  const t0 = points.length ? points[0].t : 0, t1 = points.length ? points[points.length - 1].t : 1;
  const x = (t) => P + ((W - 2 * P) * (t - t0)) / Math.max(1, t1 - t0);
  const y = (v) => H - P + 4 - ((H - 2 * P) * v) / max;
  for (const [key, color] of [["dispatched", "#3b6ea5"], ["completed", "#2e8b57"]]) {
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", color);
    line.setAttribute("stroke-width", "2");
    line.setAttribute("data-series", key);
    line.setAttribute("points", points.map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" "));
    svg.append(line);
  }
  const label = document.createElementNS(svg.namespaceURI, "text");
  label.setAttribute("x", P); label.setAttribute("y", 14); label.setAttribute("font-size", "11");
  label.textContent = `tasks/s, last ${Math.round((t1 - t0) / 1000)} s (max ${max.toFixed(1)}): blue dispatched, green completed`;
  svg.append(label);
  return svg;
}

async function clusterPage() {
  if (!state.session.admin) { page().replaceChildren(el("p", {}, "The cluster pages need an admin token.")); return; }
  const nodesBody = el("tbody", { id: "nodes" });
  const cards = el("div", { class: "cards", id: "queue" });
  const chartBox = el("div", {});
  const byPrio = el("tbody", {}), byOrg = el("tbody", {});
  page().replaceChildren(
    el("h1", {}, "Cluster"),
    el("table", {}, el("thead", {}, el("tr", {}, ["node", "state", "slots used", "free memory", "GPUs", "engines", "tools", "running", ""].map((h) => el("th", {}, h)))), nodesBody),
    el("h2", {}, "Queue"), cards, chartBox,
    el("div", { class: "cards" },
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "priority"), el("th", { class: "num" }, "queued"))), byPrio),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "organisation"), el("th", { class: "num" }, "queued"))), byOrg)));
  state.chart = [];
  let last = null;
  const ctl = new AbortController();
  state.live = ctl;
  sse("/api/cluster/events", (name, d) => {
    if (name !== "cluster") { cards.replaceChildren(el("p", { class: "error" }, d.message)); return; }
    nodesBody.replaceChildren(...d.nodes.map(nodeRow));
    const q = d.queue;
    cards.replaceChildren(...[["queued", q.queued], ["running", q.running], ["waiting to retry", q.delayed], ["dispatched", q.dispatched_total], ["completed", q.results_committed_total]]
      .map(([k, v]) => el("div", { class: "card" }, el("b", {}, v), k)));
    byPrio.replaceChildren(...q.by_priority.map((p) => el("tr", {}, el("td", {}, p.priority), el("td", { class: "num" }, p.queued))));
    byOrg.replaceChildren(...q.by_org.map((o) => el("tr", {}, el("td", {}, o.org), el("td", { class: "num" }, o.queued))));
    if (last) {
      const dt = Math.max(1, d.at_ms - last.at_ms) / 1000;
      state.chart.push({ t: d.at_ms, dispatched: (q.dispatched_total - last.queue.dispatched_total) / dt, completed: (q.results_committed_total - last.queue.results_committed_total) / dt });
      state.chart = state.chart.filter((p) => p.t > d.at_ms - 5 * 60 * 1000);
      chartBox.replaceChildren(rateChart(state.chart));
    }
    last = d;
  }, ctl.signal).catch((e) => { if (e.name !== "AbortError") cards.replaceChildren(el("p", { class: "error" }, e.message)); });
}

// ---- jobs -------------------------------------------------------------------------------

function jobRow(j) {
  const [done, total] = progress(j);
  return el("tr", { "data-job": j.job_id },
    el("td", {}, el("a", { href: "#/job/" + j.job_id }, j.job_id)), el("td", {}, j.name), el("td", {}, j.org),
    el("td", {}, j.engine), el("td", {}, el("span", { class: "state " + j.state }, j.state)),
    el("td", {}, bar(done, total), ` ${done} / ${total}`),
    el("td", { class: "num" }, fmt(j.best_score)),
    el("td", {}, j.final ? "" : el("button", { onclick: async () => { await api(`/api/jobs/${j.job_id}/cancel`, { method: "POST" }); jobsPage(); } }, "cancel")));
}

async function jobsPage() {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const stateSel = el("select", { id: "filter-state" }, ["", "queued", "running", "succeeded", "partial", "failed", "cancelled"].map((s) => {
    const o = el("option", { value: s }, s || "any state");
    if (s === (params.get("state") || "")) o.selected = true;
    return o;
  }));
  const orgIn = el("input", { id: "filter-org", placeholder: "organisation", value: params.get("org") || "" });
  const apply = () => { location.hash = "#/jobs?" + new URLSearchParams({ state: stateSel.value, org: orgIn.value }); };
  stateSel.addEventListener("change", apply);
  orgIn.addEventListener("change", apply);
  const body = el("tbody", { id: "jobs" });
  page().replaceChildren(el("h1", {}, "Jobs"),
    el("div", { class: "filters" }, stateSel, state.session.admin ? orgIn : "", el("button", { onclick: () => jobsPage() }, "refresh")),
    el("table", {}, el("thead", {}, el("tr", {}, ["job", "name", "organisation", "engine", "state", "progress", "best score", ""].map((h) => el("th", {}, h)))), body));
  const q = new URLSearchParams({ state: params.get("state") || "", org: params.get("org") || "" });
  const r = await getJson("/api/jobs?" + q);
  body.replaceChildren(...r.jobs.map(jobRow));
  if (!r.jobs.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no jobs")));
}

// ---- one job ----------------------------------------------------------------------------

function histogramSvg(h) {
  const W = 520, H = 200, P = 34;
  const svg = chartSvg("histogram", W, H);
  svg.setAttribute("data-count", h.count);
  if (!h.count) return svg;
  const max = Math.max(...h.bins.map((b) => b.count));
  const bw = (W - 2 * P) / h.bins.length;
  h.bins.forEach((b, i) => {
    const r = document.createElementNS(svg.namespaceURI, "rect");
    const bh = ((H - 2 * P) * b.count) / max;
    r.setAttribute("x", (P + i * bw).toFixed(1)); r.setAttribute("width", Math.max(1, bw - 1).toFixed(1));
    r.setAttribute("y", (H - P - bh).toFixed(1)); r.setAttribute("height", bh.toFixed(1));
    r.setAttribute("fill", "#3b6ea5"); r.setAttribute("data-count", b.count);
    const t = document.createElementNS(svg.namespaceURI, "title");
    t.textContent = `${fmt(b.from)} to ${fmt(b.to)}: ${b.count}`;
    r.append(t);
    svg.append(r);
  });
  for (const [v, x] of [[h.min, P], [h.max, W - P]]) {
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", x); t.setAttribute("y", H - P + 16); t.setAttribute("font-size", "11"); t.setAttribute("text-anchor", "middle");
    t.textContent = fmt(v);
    svg.append(t);
  }
  const cap = document.createElementNS(svg.namespaceURI, "text");
  cap.setAttribute("x", W / 2); cap.setAttribute("y", H - 4); cap.setAttribute("font-size", "11"); cap.setAttribute("text-anchor", "middle");
  cap.textContent = `score (${h.count} ligands)`;
  svg.append(cap);
  return svg;
}

function depiction(smiles) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "depiction");
  svg.setAttribute("data-smiles", smiles || "");
  if (smiles && window.SmilesDrawer) {
    const drawer = new SmilesDrawer.SvgDrawer({ width: 160, height: 110 });
    SmilesDrawer.parse(smiles, (tree) => { drawer.draw(tree, svg, "light"); svg.setAttribute("data-drawn", "1"); },
      () => svg.setAttribute("data-drawn", "error"));
  }
  return svg;
}

function hitsTable(hits, sort) {
  const fields = [...new Set(hits.flatMap((h) => Object.keys(h.fields)))].sort();
  const cols = [["rank", (h) => h.rank], ["ligand", (h) => h.ligand], ["score", (h) => h.score], ...fields.map((f) => [f, (h) => h.fields[f]])];
  const [key, dir] = sort.value;
  const get = (cols.find((c) => c[0] === key) || cols[0])[1];
  const rows = [...hits].sort((a, b) => {
    const x = get(a), y = get(b);
    const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
    return dir * c;
  });
  const th = (name) => el("th", { class: "sortable" + (name === "ligand" ? "" : " num"), "data-col": name,
    onclick: () => { sort.value = [name, key === name ? -dir : 1]; sort.render(); } }, name + (key === name ? (dir > 0 ? " ▲" : " ▼") : ""));
  return el("table", { id: "hits" },
    el("thead", {}, el("tr", {}, el("th", {}, "structure"), ...cols.map((c) => th(c[0])))),
    el("tbody", {}, rows.map((h) => el("tr", { "data-ligand": h.ligand },
      el("td", {}, depiction(h.smiles)),
      el("td", { class: "num" }, h.rank), el("td", {}, h.ligand), el("td", { class: "num" }, fmt(h.score, 3)),
      ...fields.map((f) => el("td", { class: "num" }, fmt(h.fields[f], 3)))))));
}

async function download(path, name) {
  const r = await api(path);
  const url = URL.createObjectURL(await r.blob());
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function jobPage(id) {
  const head = el("div", { id: "job-head" });
  const stages = el("div", {});
  const histBox = el("div", { id: "histogram-box" });
  const hitsBox = el("div", {});
  const reportBox = el("div", { id: "report" });
  const sort = { value: ["rank", 1], render: () => {} };
  let hits = [];
  sort.render = () => hitsBox.replaceChildren(hitsTable(hits, sort));
  page().replaceChildren(el("h1", {}, "Job ", el("span", { id: "job-id" }, id)), head, stages,
    el("div", { class: "filters" },
      el("button", { id: "download-csv", onclick: () => download(`/api/jobs/${id}/results.csv`, `${id}.csv`) }, "results (CSV)"),
      el("button", { id: "download-sdf", onclick: () => download(`/api/jobs/${id}/poses.sdf`, `${id}.sdf`) }, "poses (SDF)")),
    el("h2", {}, "Scores"), histBox, el("h2", {}, "Top hits"), hitsBox, el("h2", {}, "Report"), reportBox);

  let lastHist = 0;
  const refreshHist = async (force) => {
    if (!force && Date.now() - lastHist < 3000) return;
    lastHist = Date.now();
    histBox.replaceChildren(histogramSvg(await getJson(`/api/jobs/${id}/histogram`)));
  };
  const loadHits = async () => {
    hits = (await getJson(`/api/jobs/${id}/results?top=50`)).results;
    sort.render();
  };
  const showJob = (j) => {
    const [done, total] = progress(j);
    head.replaceChildren(el("div", { class: "cards" },
      el("div", { class: "card" }, el("b", { id: "job-state", class: "state " + j.state }, j.state), "state"),
      el("div", { class: "card" }, el("b", { id: "job-progress" }, `${done} / ${total}`), j.ligands_total ? "ligands" : "tasks", bar(done, total)),
      el("div", { class: "card" }, el("b", { id: "job-best" }, fmt(j.best_score)), "best score"),
      el("div", { class: "card" }, el("b", {}, j.engine), j.name || "engine"),
      el("div", { class: "card" }, el("b", {}, j.org), "organisation")),
      j.error ? el("p", { class: "error" }, j.error) : "", j.unschedulable_reason ? el("p", { class: "error" }, j.unschedulable_reason) : "",
      j.final ? "" : el("button", { id: "cancel", onclick: () => api(`/api/jobs/${id}/cancel`, { method: "POST" }) }, "cancel"));
    stages.replaceChildren(j.stages.length ? el("table", {},
      el("thead", {}, el("tr", {}, ["stage", "engine", "state", "in", "docked", "failed", "kept", "best"].map((h) => el("th", {}, h)))),
      el("tbody", {}, j.stages.map((s) => el("tr", {}, el("td", {}, s.name), el("td", {}, s.engine), el("td", {}, el("span", { class: "state " + s.state }, s.state)),
        el("td", { class: "num" }, s.ligands_in), el("td", { class: "num" }, s.ligands_docked), el("td", { class: "num" }, s.ligands_failed),
        el("td", {}, s.keep), el("td", { class: "num" }, fmt(s.best_score)))))) : "");
  };
  const showReport = async () => {
    const r = await getJson(`/api/jobs/${id}/report`);
    reportBox.replaceChildren(el("p", {}, `CPU ${fmt(r.cpu_seconds, 1)} s`),
      r.failures.length ? el("table", {}, el("thead", {}, el("tr", {}, ["kind", "reason", "count", "examples"].map((h) => el("th", {}, h)))),
        el("tbody", {}, r.failures.map((f) => el("tr", {}, el("td", {}, f.kind), el("td", {}, f.reason), el("td", { class: "num" }, f.count), el("td", {}, f.examples.join(", "))))))
        : el("p", { class: "muted" }, "no failures"),
      r.skipped.length ? el("p", {}, `${r.skipped.length} library records skipped`) : "");
  };

  const ctl = new AbortController();
  state.live = ctl;
  try {
    await sse(`/api/jobs/${id}/events`, (name, d) => {
      if (name !== "job") { head.append(el("p", { class: "error" }, d.message)); return; }
      showJob(d.job);
      if (d.top_hits.length) { hits = d.top_hits; sort.render(); }
      refreshHist(d.final).catch(() => {});
      if (d.final) { loadHits().catch(() => {}); showReport().catch(() => {}); }
    }, ctl.signal);
  } catch (e) {
    if (e.name === "AbortError") return;
    if (e.status === 401) { showLogin("The token was refused: " + e.message); return; }
    page().replaceChildren(el("h1", {}, "Job " + id), el("p", { class: "error", id: "job-error" }, e.status === 404 ? "No such job (or not your organisation's)." : e.message));
  }
}

// ---- routing ----------------------------------------------------------------------------

async function route() {
  stopLive();
  if (!(await startSession())) return;
  const h = location.hash || "#/jobs";
  try {
    if (h.startsWith("#/cluster")) await clusterPage();
    else if (h.startsWith("#/job/")) await jobPage(decodeURIComponent(h.slice(6)));
    else await jobsPage();
  } catch (e) {
    if (e.status === 401) showLogin("The token was refused: " + e.message);
    else page().replaceChildren(el("p", { class: "error" }, e.message));
  }
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  route();
});
document.getElementById("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); route(); });
window.addEventListener("hashchange", route);
route();
