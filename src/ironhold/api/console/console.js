// Ironhold's console: sign in with an admin key, poll the gateway's state every second, and
// verify audit records in the browser (leaf hash, inclusion proof, signed checkpoint).
// Everything the server sends is written with textContent, never parsed as HTML.

const POLL_MS = 1000;
const KEY = "ironhold.console.key";  // sessionStorage: this tab only, gone when it closes

const $ = (id) => document.getElementById(id);
let timer = null;

function key() { return sessionStorage.getItem(KEY); }

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key()}` },
                                       cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body.error ? body.error.message : `HTTP ${response.status}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.append(cell); else td.textContent = cell ?? "–";
    tr.append(td);
  }
  return tr;
}

function fill(tbody, rows) { tbody.replaceChildren(...rows); }

const ms = (v) => (v === null || v === undefined ? "–" : `${v} ms`);
const pct = (v) => `${(100 * v).toFixed(v < 0.01 && v > 0 ? 2 : 1)}%`;
const when = (t) => new Date(t * 1000).toLocaleTimeString();

function stat(value, label) {
  const box = el("div", null, "stat");
  box.append(el("b", value), el("span", label));
  return box;
}

function describeState(d) {
  const detail = d.detail || {};
  const parts = [];
  if (detail.reason) parts.push(detail.reason);
  if (detail.last_error) parts.push(`last error ${detail.last_error}`);
  if (detail.seconds_left !== undefined) parts.push(`${detail.seconds_left}s left`);
  if (detail.max_concurrent !== undefined) parts.push(`cap ${detail.max_concurrent}`);
  return parts.join(", ");
}

function renderModels(models) {
  const boxes = models.map((m) => {
    const box = el("div", null, "model");
    box.dataset.model = m.name;
    box.append(el("h3", m.name));
    const stats = el("div", null, "stats");
    stats.append(stat(m.rps.toFixed(1), "requests/s"), stat(pct(m.error_rate), "errors"),
                 stat(ms(m.latency_p50_ms), "latency p50"), stat(ms(m.latency_p99_ms), "latency p99"),
                 stat(ms(m.ttft_p50_ms), "TTFT p50"), stat(ms(m.ttft_p99_ms), "TTFT p99"),
                 stat(m.retries, "retries"), stat(m.hedges, "hedges"),
                 stat(`${m.retry_budget.spent} / ${m.retry_budget.allowed}`, "retry budget (10 s)"));
    for (const s of m.slo || []) {
      const left = s.budget_left === null ? "–" : pct(s.budget_left);
      stats.append(stat(left, `${s.sli} budget left${s.firing.length ? " (burning)" : ""}`));
    }
    box.append(stats);
    const table = el("table");
    table.append(row(["Deployment", "State", "Why", "In flight", "req/s", "Failed attempts",
                      "p50", "p99", "TTFT p50", "TTFT p99"]));
    table.firstChild.querySelectorAll("td").forEach((td) => { td.className = "muted"; });
    for (const d of m.deployments) {
      const state = el("span", d.state.replace("_", "-"), `state state-${d.state}`);
      const name = [d.name, d.version ? ` ${d.version}` : "", d.role ? ` (${d.role})` : ""].join("");
      const tr = row([name, state, describeState(d), d.outstanding, d.rps.toFixed(1),
                      pct(d.attempt_error_rate), ms(d.latency_p50_ms), ms(d.latency_p99_ms),
                      ms(d.ttft_p50_ms), ms(d.ttft_p99_ms)]);
      tr.dataset.deployment = d.name;
      tr.dataset.state = d.state;
      table.append(tr);
    }
    box.append(table);
    return box;
  });
  $("models").replaceChildren(...boxes);
}

function renderSignals(signals) {
  $("signal-count").textContent = signals.length;
  $("signal-count").classList.toggle("hot", signals.length > 0);
  $("no-signals").hidden = signals.length > 0;
  fill($("signals").tBodies[0], signals.map((s) => {
    const { subject, ...evidence } = s.detail;
    const shown = Object.entries(evidence).filter(([, v]) => v !== null && typeof v !== "object")
      .map(([k, v]) => `${k.replaceAll("_", " ")} ${v}`).join(" · ");
    const tr = row([s.kind, s.model, s.deployment, subject,
                    new Date(s.since).toLocaleTimeString(), shown]);
    tr.dataset.kind = s.kind;
    return tr;
  }));
}

const SHOWN = 25;

function renderRecent(recent) {
  fill($("recent").tBodies[0], recent.slice(0, SHOWN).map((r) => row(
    [when(r.at), r.id, r.principal, r.model, r.deployment, r.status ?? r.outcome,
     `${r.latency_ms} ms`, r.guard.join(" ") || "–", r.policy, auditButton(r.audit_seq, r.id)])));
}

function auditButton(seq, id) {
  if (seq === null || seq === undefined) return "–";
  const button = el("button", `#${seq} verify`, "link");
  button.addEventListener("click", () => verify(seq, id));
  return button;
}

function renderTools(calls) {
  $("tools").hidden = calls.length === 0;
  fill($("tool-calls").tBodies[0], calls.slice(0, SHOWN).map((c) => {
    const who = c.chain.length ? c.chain.join(" → ") : c.principal;
    const outcome = el("span", c.error ? `${c.outcome} (${c.error})` : c.outcome,
                       `state tool-${c.outcome}`);
    const tr = row([when(c.at), c.id, who, c.tool, outcome, `${c.latency_ms} ms`,
                    c.guard.join(" ") || "–", c.policy || "–", auditButton(c.audit_seq, c.id)]);
    tr.dataset.tool = c.tool;
    tr.dataset.outcome = c.outcome;
    return tr;
  }));
}

function renderChanges(rollouts, shadows) {
  $("changes").hidden = rollouts.length === 0 && shadows.length === 0;
  $("rollouts").hidden = rollouts.length === 0;
  $("shadows").hidden = shadows.length === 0;
  fill($("rollouts").tBodies[0], rollouts.map((r) => {
    const state = el("span", r.state.replace("_", " "), `state rollout-${r.state}`);
    const tr = row([r.model, r.candidate, state, `${r.percent}%`,
                    `${r.step + 1} / ${r.steps.length}`, r.window.candidate.attempts,
                    r.window.candidate.failures, r.window.stable.attempts, r.reason]);
    tr.dataset.model = r.model;
    tr.dataset.state = r.state;
    return tr;
  }));
  fill($("shadows").tBodies[0], shadows.map((s) => {
    const p99 = (side) => (s[side].latency_ms ? ms(s[side].latency_ms.p99) : "–");
    const agreement = s.exact_agreement === null ? "–" : pct(s.exact_agreement) +
      (s.similarity_mean === null ? "" : ` (meaning ${s.similarity_mean})`);
    return row([s.model, s.deployment, `${s.percent}%`, s.pairs, agreement,
                `${p99("primary")} / ${p99("shadow")}`,
                `${s.primary.errors} / ${s.shadow.errors}`, s.skipped]);
  }));
}

function render(state) {
  renderSignals(state.signals);
  renderModels(state.models);
  renderChanges(state.rollouts, state.shadows);
  fill($("guard").tBodies[0], Object.entries(state.guard_blocks).map(([k, v]) => row([k, v])));
  $("policy-denials").textContent = state.policy_denials;
  const tenants = new Set([...Object.keys(state.limit_refusals), ...Object.keys(state.spend_usd)]);
  fill($("tenants").tBodies[0], [...tenants].map((t) => row(
    [t, state.limit_refusals[t] || 0, (state.spend_usd[t] || 0).toFixed(4)])));
  renderRecent(state.recent);
  renderTools(state.tool_calls || []);
  $("status").textContent = `live · ${new Date(state.time * 1000).toLocaleTimeString()} · ` +
    `config ${state.config_version.slice(0, 12)}`;
}

async function poll() {
  try {
    render(await api("/admin/console/state"));
  } catch (error) {
    if (error.status === 401 || error.status === 403) { signOut(error.message); return; }
    $("status").textContent = `disconnected: ${error.message}`;
  }
  timer = setTimeout(poll, POLL_MS);
}

// -- audit verification (RFC 9162 inclusion proof, Ed25519-signed checkpoint) ---------------

const b64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const utf8 = (text) => new TextEncoder().encode(text);

async function sha256(...parts) {
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { joined.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", joined));
}

const equal = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

async function rootFromProof(leaf, index, size, proof) {
  if (index < 0 || index >= size) return null;
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(Uint8Array.of(1), p, r);
      if (fn % 2 === 0) {
        while (fn !== 0 && fn % 2 === 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await sha256(Uint8Array.of(1), r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

async function verify(seq, requestId) {
  const out = $("proof");
  out.className = "muted";
  if (!window.crypto || !crypto.subtle) {
    out.textContent = "Verifying in the browser needs a secure context (HTTPS or localhost).";
    return;
  }
  out.textContent = `Verifying audit record #${seq}…`;
  try {
    const [leaf, keys] = await Promise.all([api(`/admin/audit/leaves/${seq}`),
                                            api("/admin/audit/checkpoints?limit=1")]);
    const cp = leaf.checkpoint;
    const hash = await sha256(Uint8Array.of(0), utf8(leaf.record_json));
    if (!equal(hash, b64(leaf.leaf_hash))) throw new Error("the record does not match its leaf hash");
    if (JSON.parse(leaf.record_json).request_id !== requestId) throw new Error("the record is another request's");
    const root = await rootFromProof(hash, leaf.seq, cp.size, leaf.inclusion_proof.map(b64));
    if (!root || !equal(root, b64(cp.root))) throw new Error("the inclusion proof does not lead to the checkpoint's root");
    const body = `${cp.origin}\n${cp.size}\n${cp.root}\nsigned_at ${cp.signed_at.toFixed(6)}\n`;
    const publicKey = await crypto.subtle.importKey("raw", b64(keys.public_key), { name: "Ed25519" },
                                                    false, ["verify"]);
    const signed = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, b64(cp.signature), utf8(body));
    if (!signed) throw new Error("the checkpoint's signature does not verify");
    out.className = "verified";
    out.textContent = `Record #${seq} (${requestId}) verified: its leaf hash, its inclusion in the tree of ` +
      `${cp.size} records, and the checkpoint signed by key ${cp.key_id}.`;
  } catch (error) {
    out.className = "error";
    out.textContent = `Record #${seq} did NOT verify: ${error.message}`;
  }
}

// -- signing in and out ----------------------------------------------------------------------

function signOut(reason) {
  clearTimeout(timer);
  sessionStorage.removeItem(KEY);
  $("console").hidden = true;
  $("signin").hidden = false;
  $("signout").hidden = true;
  $("status").textContent = "signed out";
  $("signin-error").textContent = reason || "";
}

async function signIn(candidate) {
  sessionStorage.setItem(KEY, candidate);
  try {
    render(await api("/admin/console/state"));
  } catch (error) {
    signOut(`Sign-in failed: ${error.message}`);
    return;
  }
  $("signin").hidden = true;
  $("console").hidden = false;
  $("signout").hidden = false;
  timer = setTimeout(poll, POLL_MS);
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const field = $("key");
  const candidate = field.value.trim();
  field.value = "";
  signIn(candidate);
});
$("signout").addEventListener("click", () => signOut());
if (key()) signIn(key());
