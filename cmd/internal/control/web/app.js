// engarde's web page: polls /api/v1/get-list every second and draws it.
// Plain DOM, no framework, no build step; text is only ever set with
// textContent, so a label cannot inject markup.
"use strict";

const REFRESH_MS = 1000;
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function cell(label, cls) {
  const td = el("td", cls);
  td.dataset.label = label;
  return td;
}

const units = ["", "k", "M", "G", "T"];
function si(v, unit) {
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  const digits = i === 0 || v >= 100 ? 0 : 1;
  return v.toFixed(digits) + " " + units[i] + unit;
}

function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + (s % 60) + "s";
  return s + "s";
}

function lastText(last) {
  if (last === null || last === undefined) return "never";
  return last < 1 ? "just now" : duration(last) + " ago";
}

// rate writes packets and bits per second into a cell.
function rate(td, stats, dir) {
  const span = el("span", "rate");
  if (!stats) {
    span.textContent = "–";
  } else {
    const r = stats.rates;
    span.textContent = si(dir === "in" ? r.rxPps : r.txPps, "pkt/s");
    span.appendChild(el("small", "", si(dir === "in" ? r.rxBps : r.txBps, "bit/s")));
  }
  td.appendChild(span);
}

function drops(td, stats) {
  if (!stats) { td.textContent = "–"; return; }
  const d = stats.drops;
  td.textContent = String(d.total);
  td.title = `full ${d.full}, timeout ${d.timeout}, error ${d.error}, closed ${d.closed}, oversize ${d.oversize}; send errors ${stats.sendErrors}`;
}

// Quality: what share of the session's messages a link delivered first,
// what share it lost, how late its copies came. Figures the engine has not
// measured yet are null and show as a dash.
// count writes n with its noun, singular or plural.
function count(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}

function pct(v) {
  if (v === null || v === undefined) return "–";
  if (v === 0) return "0%";
  return (v * 100).toFixed(v < 0.1 ? 1 : 0) + "%";
}

function ms(v) {
  return v.toFixed(v < 1 ? 2 : v < 10 ? 1 : 0);
}

// LOSS_WARN and LOSS_BAD are the loss shares drawn amber and red.
const LOSS_WARN = 0.01, LOSS_BAD = 0.05;

// qualityCells appends first share, loss and lateness cells to tr; best
// marks the link that delivers first most often among its peers.
function qualityCells(tr, q, best) {
  const first = cell("First", "num first");
  const loss = cell("Loss", "num loss");
  const late = cell("Late p50 / p99", "num late");
  if (!q) {
    first.textContent = loss.textContent = late.textContent = "–";
  } else {
    first.textContent = pct(q.firstShare);
    if (best) first.classList.add("best");
    loss.textContent = pct(q.lossRate);
    if (q.lossRate == null) { /* not measured */ } else if (q.lossRate >= LOSS_BAD) loss.classList.add("bad");
    else if (q.lossRate >= LOSS_WARN) loss.classList.add("warn");
    late.textContent = q.lateP50Ms == null ? "–" : `${ms(q.lateP50Ms)} / ${ms(q.lateP99Ms)} ms`;
    const t = `${q.samples} sampled messages: ${q.first} first, ${q.copies} late, ${q.lost} lost`;
    first.title = loss.title = late.title = t;
  }
  tr.append(first, loss, late);
}

// bestOf returns the item whose quality delivered first most often, if
// there are two or more to choose from and it was measured.
function bestOf(items) {
  let best = null;
  let n = 0;
  for (const i of items) {
    const fs = i.quality && i.quality.firstShare;
    if (fs === null || fs === undefined) continue;
    n++;
    if (!best || fs > best.quality.firstShare) best = i;
  }
  return n > 1 ? best : null;
}

let busy = false;
async function post(path, body) {
  busy = true;
  try {
    const r = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : "{}",
    });
    if (!r.ok) {
      const e = await r.json().catch(() => ({ error: r.statusText }));
      showAlert(`${path}: ${e.error}`);
    }
  } catch (e) {
    showAlert(`${path}: ${e}`);
  } finally {
    busy = false;
    refresh();
  }
}

function showAlert(text) {
  const a = $("alert");
  a.textContent = text;
  a.hidden = !text;
}

function drawClient(d) {
  const tbody = $("links").tBodies[0];
  const rows = [];
  const stalled = [];
  const best = bestOf(d.interfaces);
  for (const i of d.interfaces) {
    const tr = el("tr", "link " + i.status + (i.stalled ? " stalled" : ""));
    tr.dataset.name = i.name;
    tr.dataset.status = i.status;

    const name = cell("Interface", "name");
    name.appendChild(el("span", "", i.name));
    if (i.label) name.appendChild(el("span", "label", i.label));
    tr.appendChild(name);

    const st = cell("Status", "status");
    const badge = el("span", "badge " + (i.stalled ? "stalled" : i.status), i.stalled ? "not receiving" : i.status);
    st.appendChild(badge);
    if (i.reason && i.status !== "excluded") st.appendChild(el("span", "reason", i.reason));
    tr.appendChild(st);

    const addr = cell("Source → destination", "addr");
    addr.textContent = (i.senderAddress || "–") + " → " + (i.dstAddress || "–");
    tr.appendChild(addr);

    const last = cell("Last received", "last");
    last.textContent = i.stats ? lastText(i.last) : "–";
    tr.appendChild(last);

    const rin = cell("In", "num in"); rate(rin, i.stats, "in"); tr.appendChild(rin);
    const rout = cell("Out", "num out"); rate(rout, i.stats, "out"); tr.appendChild(rout);
    const dr = cell("Drops", "num drops"); drops(dr, i.stats); tr.appendChild(dr);
    qualityCells(tr, i.quality, i === best);

    const act = cell("", "action");
    const excluded = i.status === "excluded";
    const b = el("button", excluded ? "include" : "exclude", excluded ? "Include" : "Exclude");
    b.type = "button";
    b.dataset.name = i.name;
    b.onclick = () => { b.disabled = true; post(excluded ? "api/v1/include" : "api/v1/exclude", { interface: i.name }); };
    act.appendChild(b);
    tr.appendChild(act);

    rows.push(tr);
    if (i.stalled) stalled.push(i);
  }
  tbody.replaceChildren(...rows);
  const wg = d.wireguard;
  $("wireguard").textContent = `WireGuard side ${d.listenAddress}: from WireGuard ${si(wg.rates.rxPps, "pkt/s")}, to WireGuard ${si(wg.rates.txPps, "pkt/s")}` +
    (d.noLink ? `; dropped with no link up: ${d.noLink}` : "") +
    (d.foreign ? `; dropped from another address than WireGuard's: ${d.foreign}` : "");
  return stalled.map((i) => `${i.name}${i.label ? " (" + i.label + ")" : ""} has received nothing for ${lastText(i.last).replace(" ago", "")} while other links receive.`);
}

const SERVER_COLUMNS = 10;

function sessionRow(ss) {
  const tr = el("tr", "session");
  const th = el("th", "");
  th.colSpan = SERVER_COLUMNS;
  th.scope = "rowgroup";
  const live = ss.addresses.filter((a) => a.live).length;
  th.appendChild(el("span", "sid", `Session ${ss.id}`));
  th.appendChild(el("span", "", ` · WireGuard sees it at ${ss.endpoint || "–"}`));
  const r = ss.stats.rates;
  th.appendChild(el("span", "reason",
    `${live} of ${count(ss.addresses.length, "address", "addresses")} live · ${count(ss.indexes.length, "index", "indexes")} · to WireGuard ${si(r.txPps, "pkt/s")}, replies ${si(r.rxPps, "pkt/s")} · since ${new Date(ss.since).toLocaleTimeString()}` +
    (ss.anyUDP ? " · forwardAnyUDP" : "")));
  tr.appendChild(th);
  return tr;
}

function socketRow(s, best) {
  const tr = el("tr", "socket" + (s.stalled ? " stalled" : "") + (s.live === false ? " silent" : ""));
  tr.dataset.address = s.address;
  const a = cell("Address", "name addr"); a.textContent = s.address;
  if (s.live === false) a.appendChild(el("span", "badge idle", "silent"));
  tr.appendChild(a);
  const l = cell("Replies from", "addr"); l.textContent = s.localAddress; tr.appendChild(l);
  const last = cell("Last received", "last"); last.textContent = lastText(s.last); tr.appendChild(last);
  const rin = cell("In", "num in"); rate(rin, s.stats, "in"); tr.appendChild(rin);
  const rout = cell("Out", "num out"); rate(rout, s.stats, "out"); tr.appendChild(rout);
  const dr = cell("Drops", "num drops"); drops(dr, s.stats); tr.appendChild(dr);
  qualityCells(tr, s.quality, s === best);
  const since = cell("Since", "since"); since.textContent = new Date(s.since).toLocaleTimeString(); tr.appendChild(since);
  return tr;
}

function drawServer(d) {
  const table = $("sockets");
  const bodies = [];
  const stalled = [];
  // Group by session; an older engarde without sessions gets one group.
  const groups = d.sessions ? d.sessions : [{ addresses: d.sockets }];
  for (const ss of groups) {
    const tbody = el("tbody", "");
    if (ss.id !== undefined) tbody.appendChild(sessionRow(ss));
    const best = bestOf(ss.addresses);
    for (const s of ss.addresses) {
      tbody.appendChild(socketRow(s, best));
      if (s.stalled) stalled.push(s);
    }
    bodies.push(tbody);
  }
  if (d.sessions ? !d.sessions.length : !d.sockets.length) {
    const tbody = el("tbody", "");
    const tr = el("tr", "empty");
    const td = el("td", "", "No client session yet.");
    td.colSpan = SERVER_COLUMNS;
    tr.appendChild(td);
    tbody.appendChild(tr);
    bodies.push(tbody);
  }
  for (const b of [...table.tBodies]) b.remove();
  table.append(...bodies);

  // What WireGuard gets and sends: on the handshake socket and on every
  // session's own.
  let tx = d.upstream.rates.txPps, rx = d.upstream.rates.rxPps;
  for (const ss of d.sessions || []) { tx += ss.stats.rates.txPps; rx += ss.stats.rates.rxPps; }
  const dropped = [
    [d.notWireGuard, "not WireGuard's"], [d.notMember, "from addresses in no session"],
    [d.foreign, "with an index not of their session"], [d.unrouted, "answers to no initiation seen"],
  ].filter(([n]) => n).map(([n, what]) => `${n} ${what}`);
  $("upstream").textContent = `To WireGuard at ${d.dstAddress}: ${si(tx, "pkt/s")}; replies ${si(rx, "pkt/s")}` +
    (d.noClient ? `; replies dropped with no client address live: ${d.noClient}` : "") +
    (d.initiations !== undefined ? `. Handshakes: ${count(d.initiations, "initiation", "initiations")} to WireGuard, ${count(d.initiationCopies, "copy", "copies")} held back, ${count(d.joins, "address", "addresses")} joined after the answer.` : "") +
    (dropped.length ? ` Dropped: ${dropped.join(", ")}.` : "");
  return stalled.map((s) => `${s.address} has sent nothing for ${lastText(s.last).replace(" ago", "")} while other addresses of its session send.`);
}

let timer = 0;
async function refresh() {
  clearTimeout(timer);
  try {
    const r = await fetch("api/v1/get-list", { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const d = await r.json();
    if (busy) return; // an action is under way; its refresh follows
    document.body.classList.remove("stale");
    $("role").textContent = "engarde " + d.type;
    $("description").textContent = d.description || "";
    document.title = `engarde ${d.type}${d.description ? " – " + d.description : ""}`;
    $("version").textContent = d.version;
    $("backend").textContent = d.backend || "–";
    $("uptime").textContent = duration(d.uptime || 0);
    $("listen").textContent = "listening on " + d.listenAddress;
    $("client").hidden = d.type !== "client";
    $("server").hidden = d.type !== "server";
    const problems = d.type === "client" ? drawClient(d) : drawServer(d);
    showAlert(problems.join(" "));
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.body.classList.add("stale");
    showAlert(`Cannot reach engarde (${e.message}); retrying.`);
  } finally {
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

$("reset").onclick = () => post("api/v1/reset-exclusions");
refresh();
