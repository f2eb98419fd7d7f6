// kiteq-pg console: a small static page over the admin JSON API (/api/...). No build step, no
// dependencies, works offline. The admin token (when one is set) is asked once and kept in
// sessionStorage, sent as a bearer header.
const main = document.getElementById("main");
const statusLine = document.getElementById("status");
let refreshTimer;

// Bidirectional controls (U+202A-E, U+2066-9, U+200E-F) in a client's name would reorder the
// rest of the cell (a spoofed name): shown as [U+202E].
const BIDI = /[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function esc(v) {
  return String(v ?? "")
    .replace(BIDI, (c) => `[U+${c.charCodeAt(0).toString(16).toUpperCase()}]`)
    .replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function fmtAge(seconds) {
  const s = Math.round(seconds);
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function fmtRate(r) {
  return r >= 10 ? r.toFixed(0) : r.toFixed(2);
}

function fmtTime(t) {
  return t === null || t === undefined ? "-" : new Date(t).toISOString().replace("T", " ").replace("Z", "");
}

class Unauthorized extends Error {
  constructor(refused) {
    super(refused ? "token refused" : "token needed");
    this.refused = refused;
  }
}

/** Longest wait for an answer: the admin server answers within 15 s even while PostgreSQL hangs. */
const REQUEST_TIMEOUT_MS = 20_000;

/** A re-drive runs as long as max / ratePerSecond says, at most 600 s on the server. */
const REDRIVE_TIMEOUT_MS = 630_000;

async function api(path, init, timeoutMs = REQUEST_TIMEOUT_MS) {
  const headers = { "Content-Type": "application/json" };
  const token = sessionStorage.getItem("kiteq-admin-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { ...init, headers, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    if (err.name === "TimeoutError")
      throw new Error(`the admin server did not answer within ${timeoutMs / 1000} s`);
    throw new Error(`the admin server cannot be reached (${err.message})`);
  }
  if (res.status === 401) throw new Unauthorized(Boolean(token));
  // A proxy's error page (HTML) is not the API's JSON: say the status, not a parse error.
  const json = (res.headers.get("content-type") ?? "").includes("application/json");
  const body = json ? await res.json() : undefined;
  if (!res.ok)
    throw new Error(
      body?.error ? `${body.error} (HTTP ${res.status})` : `HTTP ${res.status} ${res.statusText}`,
    );
  if (!json) throw new Error(`HTTP ${res.status}: not the admin API's JSON`);
  return body;
}

function askToken(refused) {
  const dialog = document.getElementById("token-dialog");
  document.getElementById("token-refused").hidden = !refused;
  if (!dialog.open) dialog.showModal();
  document.getElementById("token-input").focus();
}

document.getElementById("token-form").addEventListener("submit", () => {
  sessionStorage.setItem("kiteq-admin-token", document.getElementById("token-input").value.trim());
  route();
});

// Closed without a token (Escape): say what is missing, with a way back to the dialog.
document.getElementById("token-dialog").addEventListener("cancel", () => {
  main.innerHTML =
    `<p class="error" data-testid="error">This admin server needs its token to show anything.</p>` +
    `<button type="button" id="token-again">Enter the token</button>`;
  document.getElementById("token-again").addEventListener("click", () => askToken(false));
});

document.getElementById("search").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = document.getElementById("search-id").value.trim();
  if (id !== "") location.hash = `#/messages/${encodeURIComponent(id)}`;
});

window.addEventListener("hashchange", () => route());

/** The page a hash names: the overview, a group, a message, or null (no such page). */
function pageOf(hash) {
  if (hash === "/") return { kind: "overview" };
  const m = /^\/(groups|messages)\/([^/]+)$/.exec(hash);
  if (m === null) return null;
  try {
    return { kind: m[1] === "groups" ? "group" : "message", id: decodeURIComponent(m[2]) };
  } catch {
    return null; // a malformed escape (#/groups/%): no page has that name
  }
}

function notFoundPage(hash) {
  main.innerHTML =
    `<h1>No such page</h1><p class="error" data-testid="not-found">This console has no page <code>#${esc(hash)}</code>.</p>` +
    `<p>Its pages: <a href="#/" data-testid="to-overview">the overview</a>, <code>#/groups/&lt;groupId&gt;</code> and <code>#/messages/&lt;messageId&gt;</code>.</p>`;
}

async function route() {
  clearTimeout(refreshTimer);
  const hash = location.hash.replace(/^#/, "") || "/";
  // A later navigation owns the page: this one's late answer or failure must not overwrite it.
  const superseded = () => (location.hash.replace(/^#/, "") || "/") !== hash;
  const page = pageOf(hash);
  if (page === null) {
    // Before: the overview was fetched and then not shown, so "Loading…" (or the previous page)
    // stayed under a status line saying "updated".
    notFoundPage(hash);
    statusLine.textContent = "";
    return;
  }
  try {
    if (page.kind === "group") await groupPage(page.id);
    else if (page.kind === "message") await messagePage(page.id);
    // A paused refresh has said so in the status line (it said "updated" over that before).
    else if ((await overviewPage()) === "paused") return;
    if (superseded()) return;
    statusLine.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    if (superseded()) return;
    if (err instanceof Unauthorized) {
      askToken(err.refused);
      return;
    }
    main.innerHTML = `<p class="error" data-testid="error">${esc(err.message)}</p>`;
    // Tried again (a proxy's 502, a database restart): one failure stopped the refresh for good,
    // and a group or message page said "trying again" and never did.
    statusLine.textContent = `update failed at ${new Date().toLocaleTimeString()}; trying again in 5 s`;
    refreshTimer = setTimeout(route, 5000);
  }
}

function card(k, v, testid) {
  return `<div class="card"><div class="v" data-testid="${esc(testid)}">${esc(v)}</div><div class="k">${esc(k)}</div></div>`;
}

/** Rows of the overview's group table at most: 300 groups made a page of 13,000 px. */
const OVERVIEW_GROUP_ROWS = 100;
/** The overview's group filter (a substring of the group's name), kept across refreshes. */
let groupFilter = "";
/** The groups of the last overview refresh, for filtering as the operator types. */
let overviewGroups = [];

function groupRows() {
  const needle = groupFilter.trim().toLowerCase();
  const matching =
    needle === "" ? overviewGroups : overviewGroups.filter((x) => x.groupId.toLowerCase().includes(needle));
  const shown = matching.slice(0, OVERVIEW_GROUP_ROWS);
  const rows = shown
    .map(
      (x) =>
        `<tr data-testid="group-row" data-group="${esc(x.groupId)}"><td><a href="#/groups/${encodeURIComponent(x.groupId)}">${esc(x.groupId)}</a></td>` +
        `<td class="n" data-testid="owed">${x.owed}</td><td class="n" data-testid="age">${fmtAge(x.oldestOwedAgeSeconds)}</td>` +
        `<td class="n">${x.inFlight}</td><td class="n" data-testid="dead">${x.deadLetters}${x.deadLettersCapped ? "+" : ""}</td>` +
        `<td class="n">${fmtRate(x.rates.delivered)}</td><td class="n">${fmtRate(x.rates.acked)}</td>` +
        `<td class="n">${fmtRate(x.rates.nacked)}</td><td class="n">${Object.values(x.consumers).reduce((a, b) => a + b, 0)}</td>` +
        `<td>${esc(x.bindings.map((b) => `${b.topic}/${b.messageType}`).join(", "))}</td></tr>`,
    )
    .join("");
  const of =
    needle === ""
      ? `${overviewGroups.length} groups`
      : `${matching.length} of ${overviewGroups.length} groups match`;
  const more =
    matching.length > shown.length
      ? `; the ${shown.length} most behind shown, filter by name for the others`
      : "";
  return { rows, count: `${of}${more}` };
}

function showGroupRows() {
  const body = document.querySelector('[data-testid="groups"] tbody');
  const count = document.querySelector('[data-testid="groups-count"]');
  if (body === null || count === null) return;
  const { rows, count: text } = groupRows();
  body.innerHTML = rows;
  count.textContent = text;
}

async function overviewPage() {
  const [o, g] = await Promise.all([api("/api/overview"), api("/api/groups")]);
  if (location.hash.replace(/^#/, "") !== "" && location.hash !== "#/") return;
  overviewGroups = g.groups;
  const nodes = o.nodes
    .map(
      (n) =>
        `<tr><td>${esc(n.nodeId)}${n.self ? " (this node)" : ""}</td><td class="mono">${esc(n.address)}</td>` +
        `<td class="${esc(n.liveness)}">${esc(n.liveness)}</td><td>${esc(n.version ?? "-")}</td>` +
        `<td>${fmtTime(n.heartbeatAt)}</td><td>${fmtTime(n.startedAt)}</td></tr>`,
    )
    .join("");
  // A text selection in the page (an operator copying a group name) is kept: this refresh is
  // skipped and the next one tries again (each replaced the page and dropped the selection).
  const selection = window.getSelection();
  if (selection && !selection.isCollapsed && main.contains(selection.anchorNode)) {
    statusLine.textContent = "refresh paused while text is selected";
    refreshTimer = setTimeout(route, 5000);
    return "paused";
  }
  // The filter being typed in keeps its focus and caret across the refresh.
  const typing = document.activeElement?.id === "group-filter" ? document.activeElement : null;
  const caret = typing === null ? null : [typing.selectionStart, typing.selectionEnd];
  const shownGroups = groupRows();
  main.innerHTML =
    `<h1>Overview</h1><section class="cards">` +
    card(
      "nodes alive",
      `${o.nodes.filter((n) => n.liveness === "alive").length} / ${o.nodes.length}`,
      "nodes-alive",
    ) +
    card("owed (all groups)", o.owed, "total-owed") +
    card("publishes/s (cluster)", fmtRate(o.rates.publishPerSecond), "publish-rate") +
    card("pushes/s (cluster)", fmtRate(o.rates.pushPerSecond), "push-rate") +
    card("2PC pending", `${o.pendingTransactions}${o.pendingTransactionsCapped ? "+" : ""}`, "tx-pending") +
    card("topics", o.topics.length, "topics") +
    `</section><h2>Groups, most behind first</h2>` +
    `<p class="filter"><input id="group-filter" type="search" placeholder="filter groups by name" size="30" aria-label="filter groups by name" autocomplete="off" value="${esc(groupFilter)}"> ` +
    `<span data-testid="groups-count">${esc(shownGroups.count)}</span></p>` +
    `<table data-testid="groups"><thead><tr><th>group</th><th>owed</th><th>oldest owed</th><th>in flight</th><th>dead letters</th>` +
    `<th>delivered/s</th><th>acked/s</th><th>nacked/s</th><th>consumers</th><th>bindings</th></tr></thead><tbody>${shownGroups.rows}</tbody></table>` +
    `<p class="note">Owed, age and in flight are cluster-wide (sampled every 5 s); rates and consumers are summed over the live nodes (from their heartbeats, every 5 s).</p>` +
    `<h2>Nodes</h2><table data-testid="nodes"><thead><tr><th>node</th><th>address</th><th>liveness</th><th>version</th><th>heartbeat</th><th>started</th></tr></thead><tbody>${nodes}</tbody></table>` +
    `<h2>Topics</h2><p>${o.topics.map((t) => `<code>${esc(t)}</code>`).join(" ") || "none"}</p>`;
  const filter = document.getElementById("group-filter");
  filter.addEventListener("input", () => {
    groupFilter = filter.value;
    showGroupRows();
  });
  if (caret !== null) {
    filter.focus();
    filter.setSelectionRange(caret[0], caret[1]);
  }
  refreshTimer = setTimeout(route, 5000);
}

function chart(title, series, keys, colors, unit) {
  const w = 600;
  const h = 140;
  if (series.length < 2) {
    return `<div class="chart"><div>${esc(title)}</div><p class="note">collecting samples (one every 5 s)…</p></div>`;
  }
  const t0 = series[0].at;
  const t1 = series[series.length - 1].at;
  let max = 0;
  for (const s of series) for (const k of keys) max = Math.max(max, s[k]);
  if (max === 0) max = 1;
  const lines = keys
    .map((k, i) => {
      const pts = series
        .map(
          (s) =>
            `${(((s.at - t0) / Math.max(1, t1 - t0)) * (w - 4) + 2).toFixed(1)},${(h - 4 - (s[k] / max) * (h - 8)).toFixed(1)}`,
        )
        .join(" ");
      return `<polyline fill="none" stroke="${colors[i]}" stroke-width="2" points="${pts}"/>`;
    })
    .join("");
  const legend = keys.map((k, i) => `<span style="color:${colors[i]}">■</span> ${esc(k)}`).join(" &nbsp; ");
  return (
    `<div class="chart"><div>${esc(title)} <span class="note">(max ${esc(unit(max))}, last ${fmtAge((t1 - t0) / 1000)})</span></div>` +
    `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img" aria-label="${esc(title)}">` +
    `<line x1="0" y1="${h - 2}" x2="${w}" y2="${h - 2}" stroke="#d8dee6"/>${lines}</svg><div class="legend">${legend}</div></div>`
  );
}

let dlCursor = null;
// The dead-letter filters applied, and the group they belong to (each group starts unfiltered).
let dlFilters = {};
let dlGroup = null;

function filterQuery(f) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
  return q;
}

async function groupPage(groupId) {
  if (dlGroup !== groupId) {
    dlGroup = groupId;
    dlFilters = {};
  }
  const g = await api(`/api/groups/${encodeURIComponent(groupId)}`);
  const bindings = g.bindings
    .map(
      (b) =>
        `<tr><td>${esc(b.topic)}</td><td class="mono">${esc(b.messageType)}</td><td>${esc(b.bindType)}</td><td class="n">${b.watermark}</td><td>${b.persistent}</td></tr>`,
    )
    .join("");
  main.innerHTML =
    `<h1>Group <span data-testid="group-id">${esc(groupId)}</span></h1><section class="cards">` +
    card("owed", g.owed, "group-owed") +
    card("oldest owed", fmtAge(g.oldestOwedAgeSeconds), "group-age") +
    card("in flight", g.inFlight, "group-inflight") +
    card("dead letters", `${g.deadLetters}${g.deadLettersCapped ? "+" : ""}`, "group-dead") +
    card("delivered/s (cluster)", fmtRate(g.rates.delivered), "group-delivered-rate") +
    card("acked/s (cluster)", fmtRate(g.rates.acked), "group-acked-rate") +
    `</section><h2>Last hour</h2><div class="charts">` +
    chart("Owed and in flight", g.series, ["owed", "inFlight"], ["#1f6feb", "#b26a00"], (v) =>
      String(Math.round(v)),
    ) +
    chart("Oldest owed age (s)", g.series, ["oldestOwedAgeSeconds"], ["#c62828"], (v) => fmtAge(v)) +
    chart(
      "Delivered and acked per second",
      g.series,
      ["delivered", "acked"],
      ["#1f6feb", "#2e7d32"],
      (v) => `${fmtRate(v)}/s`,
    ) +
    `</div><h2>Bindings</h2><table><thead><tr><th>topic</th><th>message type</th><th>type</th><th>watermark</th><th>persistent</th></tr></thead><tbody>${bindings}</tbody></table>` +
    `<h2>Dead letters</h2>` +
    `<form class="filters" id="dl-filters">` +
    ["topic", "messageType", "since", "until", "error"]
      .map(
        (k) =>
          `<label>${k}<input name="${k}" value="${esc(dlFilters[k] ?? "")}" size="14" placeholder="${k === "since" || k === "until" ? "2h, ISO time" : ""}"></label>`,
      )
      .join("") +
    `<button type="submit">Filter</button></form>` +
    `<div id="dl-list"></div>` +
    `<h2>Re-drive</h2><form class="filters" id="redrive-form">` +
    `<label>by<input name="by" size="12" placeholder="your name"></label>` +
    `<label>reason<input name="reason" size="30" placeholder="why"></label>` +
    `<label>max<input name="max" size="6" value="1000"></label>` +
    `<label>per second<input name="ratePerSecond" size="5" value="100"></label>` +
    `<button type="button" id="redrive-dry" data-testid="redrive-dry">Preview (dry run)</button>` +
    `<button type="button" class="danger" id="redrive-run" data-testid="redrive-run">Re-drive</button></form>` +
    `<p class="note">Re-drives the dead letters matching the filters above, paced at the given rate; each gets a <code>redriven</code> history row saying who and why.</p>` +
    `<div id="redrive-result" data-testid="redrive-result"></div>`;
  document.getElementById("dl-filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    dlFilters = Object.fromEntries(new FormData(ev.target).entries());
    dlCursor = null;
    loadDeadLetters(groupId).catch(showError);
  });
  document
    .getElementById("redrive-dry")
    .addEventListener("click", () => redrive(groupId, true).catch(showError));
  document
    .getElementById("redrive-run")
    .addEventListener("click", () => redrive(groupId, false).catch(showError));
  dlCursor = null;
  // A bad filter says so under the form: it replaced the whole page, on every group, until a reload.
  await loadDeadLetters(groupId).catch(showError);
}

function showError(err) {
  if (err instanceof Unauthorized) return askToken(err.refused);
  // The page may have changed meanwhile (a late answer for a group page left).
  const out = document.getElementById("redrive-result");
  if (out) out.innerHTML = `<p class="error">${esc(err.message)}</p>`;
}

async function loadDeadLetters(groupId, append) {
  const q = filterQuery(dlFilters);
  q.set("limit", "50");
  if (append && dlCursor) q.set("cursor", dlCursor);
  const page = await api(`/api/groups/${encodeURIComponent(groupId)}/dead-letters?${q}`);
  dlCursor = page.nextCursor;
  const rows = page.items
    .map(
      (d) =>
        `<tr data-testid="dead-letter"><td class="mono"><a href="#/messages/${esc(d.messageId)}">${esc(d.messageId)}</a></td>` +
        `<td>${esc(d.topic)}</td><td>${esc(d.messageType)}</td><td>${fmtTime(d.at)}</td><td class="n">${esc(d.attempt ?? "-")}</td><td>${esc(d.lastError ?? "-")}</td></tr>`,
    )
    .join("");
  const list = document.getElementById("dl-list");
  if (list === null || dlGroup !== groupId) return; // the page changed while this page loaded
  const body = list.querySelector("tbody");
  if (append && body) body.insertAdjacentHTML("beforeend", rows);
  else {
    list.innerHTML =
      `<table><thead><tr><th>messageId</th><th>topic</th><th>message type</th><th>dead-lettered</th><th>attempts</th><th>last error</th></tr></thead><tbody>${rows}</tbody></table>` +
      `<p class="note" id="dl-empty">${page.items.length === 0 ? "No dead letters match." : ""}</p>` +
      `<button type="button" id="dl-more" hidden>More</button>`;
    document
      .getElementById("dl-more")
      .addEventListener("click", () => loadDeadLetters(groupId, true).catch(showError));
  }
  document.getElementById("dl-more").hidden = dlCursor === null;
}

async function redrive(groupId, dryRun) {
  const form = Object.fromEntries(new FormData(document.getElementById("redrive-form")).entries());
  // The filters as shown (typed but not applied with Filter they were ignored, and a re-drive
  // took every dead letter of the group); applied to the list as well.
  const filled = (f) => JSON.stringify(Object.entries(f).filter(([, v]) => v !== ""));
  const shown = Object.fromEntries(new FormData(document.getElementById("dl-filters")).entries());
  if (filled(shown) !== filled(dlFilters)) {
    dlFilters = shown;
    dlCursor = null;
    await loadDeadLetters(groupId);
  }
  const body = { ...dlFilters, dryRun };
  for (const k of ["by", "reason"]) if (form[k]) body[k] = form[k];
  for (const k of ["max", "ratePerSecond"]) {
    const v = String(form[k] ?? "").trim();
    if (v === "") continue;
    // "abc" or "1,000" became null, which the API took as its default (1,000).
    if (!/^\d+$/.test(v)) throw new Error(`${k} must be a whole number, not "${v}"`);
    body[k] = Number(v);
  }
  if (!dryRun && !confirm(`Re-drive the dead letters of ${groupId} matching the filters?`)) return;
  const out = document.getElementById("redrive-result");
  out.innerHTML = `<p class="note">${dryRun ? "previewing" : "re-driving"}…</p>`;
  // Not the 20 s of other requests: a re-drive of 3,000 at 100/s answered "did not answer
  // within 20 s" while it ran on, and the next click was refused as already running.
  const r = await api(
    `/api/groups/${encodeURIComponent(groupId)}/redrive`,
    { method: "POST", body: JSON.stringify(body) },
    REDRIVE_TIMEOUT_MS,
  );
  out.innerHTML =
    `<div class="result">` +
    (r.dryRun
      ? `Dry run: <strong data-testid="redrive-matched">${r.matched}</strong> dead letter(s) would be re-driven.`
      : `Re-driven: <strong data-testid="redrive-count">${r.redriven}</strong> of ${r.matched} matched.`) +
    (r.limitReached ? " (stopped at max)" : "") +
    `<div class="mono note">${r.messageIds.map(esc).join(" ")}${r.truncated ? " …" : ""}</div></div>`;
  if (!r.dryRun) {
    dlCursor = null;
    await loadDeadLetters(groupId);
  }
}

async function messagePage(messageId) {
  const e = await api(`/api/messages/${encodeURIComponent(messageId)}/explain`);
  const m = e.message;
  const groups = e.groups
    .map(
      (g) =>
        `<div class="group-block" data-testid="explain-group" data-group="${esc(g.groupId)}"><div><a href="#/groups/${encodeURIComponent(g.groupId)}"><strong>${esc(g.groupId)}</strong></a>: ` +
        `<span class="state state-${esc(g.state)}" data-testid="explain-state">${esc(g.state.replace("_", " "))}</span> — <span data-testid="explain-description">${esc(g.description)}</span></div>` +
        (g.timeline.length === 0
          ? ""
          : `<table><thead><tr><th>at</th><th>kind</th><th>attempt</th><th>node</th><th>detail</th></tr></thead><tbody>` +
            g.timeline
              .map(
                (t) =>
                  `<tr><td>${fmtTime(t.at)}</td><td>${esc(t.kind)}</td><td class="n">${esc(t.attempt ?? "-")}</td><td>${esc(t.nodeId ?? "-")}</td><td>${esc(t.detail ?? "")}</td></tr>`,
              )
              .join("") +
            `</tbody></table>`) +
        `</div>`,
    )
    .join("");
  const events = e.messageEvents
    .map(
      (t) =>
        `<tr><td>${fmtTime(t.at)}</td><td>${esc(t.kind)}</td><td class="n">${esc(t.attempt ?? "-")}</td><td>${esc(t.nodeId ?? "-")}</td><td>${esc(t.detail ?? "")}</td></tr>`,
    )
    .join("");
  main.innerHTML =
    `<h1>Message <span class="mono" data-testid="message-id">${esc(m.messageId)}</span></h1>` +
    `<section class="cards">${card("topic", m.topic, "message-topic")}${card("message type", m.messageType, "message-type")}` +
    `${card("from group", m.publisherGroupId, "message-publisher")}${card("transaction", e.transaction, "message-tx")}` +
    `${card("deliver limit", m.deliverLimit, "message-limit")}${card("body", `${m.bodySize} bytes`, "message-size")}</section>` +
    `<p class="note">stored ${fmtTime(m.storedAt)} · created ${fmtTime(m.createdAt)} · expires ${fmtTime(m.expiresAt)}</p>` +
    `<h2>Per group</h2>${groups || "<p>No group is bound to it or was ever owed it.</p>"}` +
    `<h2>Message events</h2><table><thead><tr><th>at</th><th>kind</th><th>attempt</th><th>node</th><th>detail</th></tr></thead><tbody>${events}</tbody></table>`;
}

route();
