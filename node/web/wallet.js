// The browser wallet page. All cryptography runs in wallet.wasm (the
// project's Go wallet and client code); this file only wires the page to the
// `zkbank` object it exposes and keeps the wallet JSON in localStorage.
"use strict";

const KEY_WALLET = "zkbank.wallet";
const KEY_NODE = "zkbank.node";
const $ = (id) => document.getElementById(id);
let current = null; // public fields of the loaded wallet

function journalKey() { return "zkbank.journal." + (current ? current.account : ""); }
function journal() {
  try { return JSON.parse(localStorage.getItem(journalKey()) || "{}"); } catch (e) { return {}; }
}
function record(r, to) {
  const j = journal();
  j[r.id] = { id: r.id, to: to, amount: r.amount, time: r.time };
  localStorage.setItem(journalKey(), JSON.stringify(j));
}

function nodeURL() { return $("node-url").value.trim().replace(/\/+$/, ""); }

const friendly = {
  unreachable: (e) => "Cannot reach the node (" + e.message + "). Is it running, and is the URL right?",
  not_ready: () => "The chain is not ready yet (key ceremony or startup in progress). Try again in a few seconds.",
  unknown_account: () => "This account is not open on the chain yet: press \u201cOpen account\u201d.",
  no_wallet: () => "Create or import a wallet first.",
};

function showError(e) {
  const code = (e && e.code) || "error";
  const text = friendly[code] ? friendly[code](e) : (e && e.message) || String(e);
  const el = $("error");
  el.textContent = text;
  el.dataset.code = code;
  el.hidden = false;
  $("notice").hidden = true;
}
function showNotice(text) {
  $("error").hidden = true;
  $("error").dataset.code = "";
  const el = $("notice");
  el.textContent = text;
  el.hidden = false;
}
function clearMessages() { $("error").hidden = true; $("error").dataset.code = ""; $("notice").hidden = true; }

// busy runs an async action with its button disabled and body[data-busy].
async function busy(button, f) {
  clearMessages();
  button.disabled = true;
  document.body.dataset.busy = "true";
  try { return await f(); } catch (e) { showError(e); return undefined; }
  finally { button.disabled = false; document.body.dataset.busy = "false"; }
}

function store(w) {
  localStorage.setItem(KEY_WALLET, w.json);
  current = w;
  render();
}

function render() {
  const have = !!current;
  $("setup").hidden = have;
  for (const id of ["wallet", "balance", "pay", "history-section", "lending-section"]) $(id).hidden = !have;
  if (!have) return;
  const card = current.kind === "card";
  $("wallet-label").textContent = "\u201c" + current.name + "\u201d" + (card ? " (card)" : "");
  $("account-id").textContent = current.account;
  $("wallet-chain").textContent = current.chain || "not opened yet";
  $("balance-label").textContent = card ? "Available credit" : "Available balance";
  $("pay-title").textContent = card ? "Charge the card" : "Send money";
  $("send").textContent = card ? "Charge" : "Send";
  $("send-to").previousElementSibling.textContent = card ? "Merchant account id" : "Recipient account id";
}

function showBalance(b) {
  $("balance-available").textContent = b.available;
  $("balance-pending").textContent = b.pending;
  $("balance-height").textContent = String(b.height);
  const lim = $("card-limit");
  if (b.card && b.limit) { lim.textContent = "Limit " + b.limit + ", spent " + b.spent; lim.hidden = false; } else { lim.hidden = true; }
}

function verdict(r, what) {
  if (r.status === "committed") return what + " " + r.amount + " committed in block " + r.height + " (transfer " + r.id.slice(0, 16) + ")";
  return what + " rejected: " + (r.reason || r.code) + " (" + r.code + "); nothing moved (transfer " + r.id.slice(0, 16) + ")";
}

async function refresh() {
  const b = await (current.kind === "card" ? zkbank.available(nodeURL()) : zkbank.balance(nodeURL()));
  showBalance(b);
  return b;
}

function download(name, text) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 0);
}

function wire() {
  $("node-url").value = localStorage.getItem(KEY_NODE) || location.origin;
  $("node-url").addEventListener("change", () => localStorage.setItem(KEY_NODE, nodeURL()));

  $("create").addEventListener("click", () => busy($("create"), async () => {
    const name = $("wallet-name").value.trim();
    if (!name) throw Object.assign(new Error("Give the wallet a name."), { code: "invalid" });
    store(await zkbank.createWallet(name, $("wallet-kind").value));
    showNotice("Wallet created. Export a copy, then open its account on the chain.");
  }));
  $("import-file").addEventListener("change", async () => {
    const f = $("import-file").files[0];
    if (f) $("import-text").value = await f.text();
  });
  $("import").addEventListener("click", () => busy($("import"), async () => {
    store(await zkbank.importWallet($("import-text").value));
    $("import-text").value = "";
    showNotice("Wallet imported.");
  }));
  $("export").addEventListener("click", () => busy($("export"), async () => {
    const w = await zkbank.exportWallet();
    download(w.name + ".json", w.json);
  }));
  $("forget").addEventListener("click", () => {
    if (!confirm("Remove this wallet from the browser? Without an exported copy its account is lost.")) return;
    localStorage.removeItem(KEY_WALLET);
    current = null;
    render();
  });
  $("open").addEventListener("click", () => busy($("open"), async () => {
    localStorage.setItem(KEY_NODE, nodeURL());
    const r = await zkbank.openAccount(nodeURL());
    store(r);
    $("open-result").textContent = (r.already ? "Account already open" : "Account opened") + " on " + r.chain + " (shard " + r.shard + ", lane " + r.lane + ")";
    await refresh();
  }));
  $("refresh").addEventListener("click", () => busy($("refresh"), refresh));
  $("apply").addEventListener("click", () => busy($("apply"), async () => {
    $("apply-result").textContent = "Applying…";
    try {
      const r = await zkbank.apply(nodeURL());
      record(r, current.account);
      $("apply-result").textContent = verdict(r, "Apply of");
      if (r.balance) showBalance(r.balance);
    } catch (e) { $("apply-result").textContent = ""; throw e; }
  }));
  $("send").addEventListener("click", () => busy($("send"), async () => {
    const to = $("send-to").value.trim().toLowerCase(), amount = $("send-amount").value.trim();
    const card = current.kind === "card";
    $("send-result").textContent = card ? "Charging…" : "Sending…";
    try {
      const r = await (card ? zkbank.charge(nodeURL(), to, amount) : zkbank.send(nodeURL(), to, amount));
      record(r, to);
      $("send-result").textContent = verdict(r, card ? "Charge of" : "Payment of");
      $("send-result").dataset.status = r.status;
      if (r.balance) showBalance(r.balance);
      if (r.status !== "committed") showError({ code: r.code, message: $("send-result").textContent });
    } catch (e) {
      $("send-result").textContent = e.code === "insufficient_funds" ? e.message : "";
      $("send-result").dataset.status = e.code || "error";
      throw e;
    }
  }));
  $("history-refresh").addEventListener("click", () => busy($("history-refresh"), async () => {
    const list = await zkbank.history(nodeURL());
    const j = journal(), body = $("history");
    body.textContent = "";
    for (const t of list) {
      const tr = document.createElement("tr");
      tr.dataset.id = t.id;
      const status = t.status + (t.code ? " (" + t.code + ")" : "");
      const amount = j[t.id] ? j[t.id].amount : "confidential";
      for (const v of [String(t.height), status, t.direction, t.counterparty.slice(0, 16), amount]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    $("history-empty").hidden = list.length > 0;
    $("history-table").hidden = list.length === 0;
  }));
  $("lending-refresh").addEventListener("click", () => busy($("lending-refresh"), async () => {
    const [sc, l] = await Promise.all([zkbank.score(nodeURL()), zkbank.lending(nodeURL())]);
    $("score").textContent = String(sc.score);
    $("score-height").textContent = "(height " + sc.height + ")";
    $("defaults").textContent = String(l.defaults);
    const fill = (ul, items, line) => {
      ul.textContent = "";
      for (const it of items || []) {
        const li = document.createElement("li");
        li.textContent = line(it);
        ul.appendChild(li);
      }
    };
    fill($("consents"), l.consents, (c) => "lender " + c.lender.slice(0, 16) + ", " + c.scope + ", until height " + c.expiry + (c.revoked ? " (revoked)" : ""));
    fill($("loans"), l.loans, (x) => "from " + x.lender.slice(0, 16) + ": " + x.paid + " of " + x.due.length + " installments paid" + (x.missed ? ", " + x.missed + " missed" : "") + " (next due " + (x.due[x.paid + x.missed] ?? "-") + ")");
    $("lending-empty").hidden = (l.consents || []).length + (l.loans || []).length > 0;
  }));
}

// zkbankReady is called by wallet.wasm once the `zkbank` object exists.
window.zkbankReady = async () => {
  $("loading").hidden = true;
  wire();
  const saved = localStorage.getItem(KEY_WALLET);
  if (saved) {
    try { current = await zkbank.importWallet(saved); } catch (e) { showError(e); }
  }
  render();
  document.body.dataset.ready = "true";
};

(async () => {
  const go = new Go();
  try {
    const resp = fetch("/wallet.wasm");
    let inst;
    if (WebAssembly.instantiateStreaming) {
      inst = await WebAssembly.instantiateStreaming(resp, go.importObject);
    } else {
      inst = await WebAssembly.instantiate(await (await resp).arrayBuffer(), go.importObject);
    }
    go.run(inst.instance);
  } catch (e) {
    $("loading").textContent = "Could not load the wallet: " + e.message;
    showError(e);
  }
})();
