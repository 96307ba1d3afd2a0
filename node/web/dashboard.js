// zkbank dashboard: live chain state from this node's event stream
// (GET /v1/events, docs/API.md). Plain JavaScript, no dependencies.
"use strict";

(function () {
  const WINDOW_MS = 5 * 60 * 1000; // charts show the last 5 minutes
  const MAX_BLOCKS = 20;           // recent blocks listed
  const MAX_ENVELOPES = 12;        // envelopes shown per block
  const RETRY_MS = 3000;

  const $ = (id) => document.getElementById(id);
  const state = {
    names: [],            // validator names by index (genesis)
    credits: [],
    proposed: new Map(),  // validator index -> heights proposed (seen here)
    lastProposer: -1,
    lastProposedAt: new Map(), // validator index -> height
    samples: [],          // {t, committed, rejected, tps, finality}
    lastHeight: 0,
    source: null,
    retry: null,
    genesisLoaded: false,
  };

  function text(id, v) {
    const el = $(id);
    if (el) el.textContent = v;
  }

  function short(id) {
    if (!id) return "–";
    return id.length > 12 ? id.slice(0, 10) + "…" : id;
  }

  function banner(kind, msg) {
    const b = $("status-banner");
    b.dataset.state = kind;
    b.textContent = msg;
  }

  // --- status and chain ---------------------------------------------------

  function onStatus(st) {
    text("chain-id", st.chain || "–");
    text("node-name", (st.node || "–") + (st.role ? " (" + st.role + ")" : ""));
    text("peers", String(st.peers ?? "–"));
    text("version", st.version ? "zkbank " + st.version + ", protocol " + st.protocol : "");
    if (!st.ready) {
      banner("not-ready", "chain not ready: the key ceremony or startup is in progress");
      return;
    }
    banner("ok", "live");
    text("height", String(st.height));
    text("round", String(st.round));
    text("epoch", String(st.epoch));
    text("applied-height", String(st.applied_height));
    text("mempool", String(st.mempool));
    text("committed", String(st.committed_transfers));
    text("rejected", String(st.rejected_transfers));
    text("tps", fmt(st.transfers_per_second));
    text("finality", st.last_finality_ms ? fmt(st.last_finality_ms) + " ms" : "–");
    if (Array.isArray(st.work_credits)) {
      state.credits = st.work_credits;
      renderValidators();
    }
    sample(st.committed_transfers, st.rejected_transfers, st.transfers_per_second, st.last_finality_ms);
  }

  function onHeight(ev) {
    banner("ok", "live");
    text("height", String(ev.height));
    text("epoch", String(ev.epoch));
    text("applied-height", String(ev.applied_height));
    text("mempool", String(ev.mempool));
    text("committed", String(ev.committed));
    text("rejected", String(ev.rejected));
    text("tps", fmt(ev.tps));
    text("finality", ev.finality_ms ? fmt(ev.finality_ms) + " ms" : "–");
    state.credits = ev.credits || [];
    if (ev.proposer >= 0 && ev.proposer_height > 0) {
      const seen = state.proposed.get(ev.proposer) || new Set();
      seen.add(ev.proposer_height);
      state.proposed.set(ev.proposer, seen);
      state.lastProposer = ev.proposer;
      state.lastProposedAt.set(ev.proposer, ev.proposer_height);
    }
    renderValidators();
    sample(ev.committed, ev.rejected, ev.tps, ev.finality_ms);
    if (ev.height > state.lastHeight) {
      state.lastHeight = ev.height;
      addBlock(ev);
    }
  }

  function fmt(x) {
    if (x === undefined || x === null || isNaN(x)) return "–";
    return x >= 100 ? String(Math.round(x)) : x.toFixed(1);
  }

  // --- validators -----------------------------------------------------------

  function renderValidators() {
    const body = document.querySelector("#validators tbody");
    const n = Math.max(state.credits.length, state.names.length);
    $("validators-empty").hidden = n > 0;
    while (body.rows.length > n) body.deleteRow(-1);
    for (let i = 0; i < n; i++) {
      let tr = body.rows[i];
      if (!tr) {
        tr = body.insertRow();
        tr.dataset.index = String(i);
        for (const cls of ["validator-index", "validator-name", "credits", "proposed", "last-proposed"]) {
          const td = tr.insertCell();
          td.className = cls;
        }
      }
      const proposed = state.proposed.get(i);
      tr.cells[0].textContent = String(i);
      tr.cells[1].textContent = state.names[i] || "validator " + i;
      tr.cells[2].textContent = state.credits[i] !== undefined ? String(state.credits[i]) : "–";
      tr.cells[3].textContent = proposed ? String(proposed.size) : "0";
      tr.cells[4].textContent = state.lastProposedAt.has(i) ? String(state.lastProposedAt.get(i)) : "–";
      tr.classList.toggle("proposer-latest", i === state.lastProposer);
      if (i === state.lastProposer) tr.setAttribute("aria-current", "true");
      else tr.removeAttribute("aria-current");
    }
  }

  // --- blocks ---------------------------------------------------------------

  function addBlock(ev) {
    const list = $("blocks");
    const b = ev.block || {};
    const li = document.createElement("li");
    li.className = "block";
    li.dataset.height = String(ev.height);
    const head = document.createElement("div");
    head.className = "block-head";
    const total = (b.transfers || []).length + (b.transfers_omitted || 0);
    let summary = "height " + ev.height + " · " + total + " envelope" + (total === 1 ? "" : "s");
    if (b.opens) summary += " · " + b.opens + " opening" + (b.opens === 1 ? "" : "s");
    if (b.consents) summary += " · " + b.consents + " consent" + (b.consents === 1 ? "" : "s");
    if (ev.proposer >= 0) summary += " · height " + ev.proposer_height + " proposed by " + (state.names[ev.proposer] || "validator " + ev.proposer) + " in round " + ev.round;
    head.textContent = summary;
    li.appendChild(head);
    const outcomes = ev.outcomes || [];
    const okN = outcomes.filter((o) => o.status === "committed").length;
    if (outcomes.length) {
      const p = document.createElement("div");
      p.className = "block-outcomes small";
      p.textContent = "decided here: " + okN + " committed, " + (outcomes.length - okN) + " rejected";
      li.appendChild(p);
    }
    if (total > 0) {
      const ul = document.createElement("ul");
      ul.className = "envelopes";
      for (const t of (b.transfers || []).slice(0, MAX_ENVELOPES)) {
        const e = document.createElement("li");
        e.className = "envelope";
        e.dataset.id = t.id;
        e.dataset.kind = t.kind;
        const kind = document.createElement("span");
        kind.className = "kind kind-" + t.kind;
        kind.textContent = t.kind;
        const who = document.createElement("span");
        who.className = "who";
        let to = short(t.to);
        if (t.payees > 1) to += " +" + (t.payees - 1);
        who.textContent = t.kind === "apply" ? short(t.from) + " applies pending credits" : short(t.from) + " → " + to;
        who.title = t.from + " → " + t.to;
        const id = document.createElement("button");
        id.type = "button";
        id.className = "link envelope-id";
        id.textContent = short(t.id);
        id.setAttribute("aria-label", "look up transfer " + t.id);
        id.addEventListener("click", () => { $("lookup-id").value = t.id; lookup(t.id); });
        e.append(kind, " ", who, " ", id);
        ul.appendChild(e);
      }
      const more = total - Math.min(MAX_ENVELOPES, (b.transfers || []).length);
      if (more > 0) {
        const e = document.createElement("li");
        e.className = "muted small";
        e.textContent = "… and " + more + " more";
        ul.appendChild(e);
      }
      li.appendChild(ul);
    }
    list.insertBefore(li, list.firstChild);
    while (list.children.length > MAX_BLOCKS) list.removeChild(list.lastChild);
    $("blocks-empty").hidden = true;
  }

  // --- charts (inline SVG) --------------------------------------------------

  function sample(committed, rejected, tps, finality) {
    const now = Date.now();
    state.samples.push({ t: now, committed, rejected, tps, finality });
    while (state.samples.length && state.samples[0].t < now - WINDOW_MS) state.samples.shift();
    drawCharts(now);
  }

  // rate is the per-second increase of field over the ~10 s before each sample.
  function rates(field) {
    const s = state.samples;
    const out = [];
    let j = 0;
    for (let i = 0; i < s.length; i++) {
      while (j < i && s[i].t - s[j].t > 10000) j++;
      const dt = (s[i].t - s[j].t) / 1000;
      const dv = s[i][field] - s[j][field];
      out.push({ t: s[i].t, v: dt > 0 && dv >= 0 ? dv / dt : 0 });
    }
    return out;
  }

  function drawCharts(now) {
    const committed = rates("committed");
    const rejected = rates("rejected");
    const fin = state.samples.filter((x) => x.finality > 0).map((x) => ({ t: x.t, v: x.finality }));
    chart($("chart-tps"), now, [
      { pts: committed, cls: "line-committed" },
      { pts: rejected, cls: "line-rejected" },
    ]);
    chart($("chart-finality"), now, [{ pts: fin, cls: "line-finality" }]);
    const last = (a) => (a.length ? a[a.length - 1].v : 0);
    text("chart-tps-summary", state.samples.length < 2 ? "collecting data…" :
      "now " + fmt(last(committed)) + " committed/s, " + fmt(last(rejected)) + " rejected/s");
    text("chart-finality-summary", fin.length ? "last " + fmt(last(fin)) + " ms, max " +
      fmt(Math.max(...fin.map((p) => p.v))) + " ms over the window" : "no transfer committed yet");
  }

  const SVG = "http://www.w3.org/2000/svg";
  function chart(svg, now, series) {
    const W = 600, H = 160, PAD = 4;
    let max = 0;
    for (const s of series) for (const p of s.pts) max = Math.max(max, p.v);
    max = max > 0 ? max * 1.1 : 1;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    for (const f of [0.25, 0.5, 0.75]) {
      const g = document.createElementNS(SVG, "line");
      g.setAttribute("x1", "0"); g.setAttribute("x2", String(W));
      g.setAttribute("y1", String(H * f)); g.setAttribute("y2", String(H * f));
      g.setAttribute("class", "grid");
      svg.appendChild(g);
    }
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", "4"); label.setAttribute("y", "14");
    label.setAttribute("class", "axis");
    label.textContent = fmt(max);
    svg.appendChild(label);
    for (const s of series) {
      if (s.pts.length < 1) continue;
      const d = s.pts.map((p, i) => {
        const x = ((p.t - (now - WINDOW_MS)) / WINDOW_MS) * W;
        const y = H - PAD - (p.v / max) * (H - 2 * PAD);
        return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
      }).join(" ");
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d);
      path.setAttribute("class", "line " + s.cls);
      svg.appendChild(path);
    }
  }

  // --- transfer lookup ------------------------------------------------------

  async function lookup(id) {
    const out = $("lookup-result");
    out.className = "";
    id = (id || "").trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(id)) {
      out.className = "error";
      out.textContent = "A transfer id is 64 hexadecimal digits.";
      return;
    }
    out.textContent = "looking up…";
    try {
      const r = await fetch("/v1/transfers/" + id, { cache: "no-store" });
      const body = await r.json();
      if (!r.ok) {
        out.className = "error";
        out.textContent = body.error || "lookup failed (" + r.status + ")";
        return;
      }
      out.replaceChildren(transferView(body));
    } catch (e) {
      out.className = "error";
      out.textContent = "node unreachable, try again";
    }
  }

  function transferView(t) {
    const dl = document.createElement("dl");
    dl.className = "transfer status-" + t.status;
    const row = (k, v, cls) => {
      if (v === undefined || v === null || v === "") return;
      const div = document.createElement("div");
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      if (cls) dd.className = cls;
      div.append(dt, dd);
      dl.appendChild(div);
    };
    row("Status", t.status, "transfer-status");
    if (t.status === "unknown") row("Note", "this node has not seen it (not submitted here, or not yet ordered)");
    row("Reason", t.reason, "transfer-reason");
    row("Code", t.code, "transfer-code");
    row("Height", t.height ? String(t.height) : "");
    row("Kind", t.kind || "");
    row("From", t.from);
    row("To", t.payees && t.payees.length > 1 ? t.payees.join(", ") : t.to);
    return dl;
  }

  // --- connection -----------------------------------------------------------

  async function loadGenesis() {
    try {
      const r = await fetch("/v1/genesis", { cache: "no-store" });
      if (!r.ok) return;
      const g = await r.json();
      state.names = (g.validators || []).map((v) => v.name);
      state.genesisLoaded = true;
      renderValidators();
    } catch (e) { /* the stream's error handler reports the node down */ }
  }

  function connect() {
    if (state.source) state.source.close();
    clearTimeout(state.retry);
    if (!state.genesisLoaded) loadGenesis();
    const es = new EventSource("/v1/events");
    state.source = es;
    es.addEventListener("status", (m) => onStatus(JSON.parse(m.data)));
    es.addEventListener("height", (m) => onHeight(JSON.parse(m.data)));
    es.onerror = () => {
      banner("unreachable", "node unreachable, retrying");
      // The browser retries a dropped stream itself; a refused one (an
      // error status, too many subscribers) is retried here.
      if (es.readyState === EventSource.CLOSED) {
        state.retry = setTimeout(connect, RETRY_MS);
      }
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("lookup").addEventListener("submit", (e) => {
      e.preventDefault();
      lookup($("lookup-id").value);
    });
    renderValidators();
    drawCharts(Date.now());
    connect();
  });
})();
