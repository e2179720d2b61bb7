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
    (d.noLink ? `; dropped with no link up: ${d.noLink}` : "");
  return stalled.map((i) => `${i.name}${i.label ? " (" + i.label + ")" : ""} has received nothing for ${lastText(i.last).replace(" ago", "")} while other links receive.`);
}

function drawServer(d) {
  const tbody = $("sockets").tBodies[0];
  const rows = [];
  const stalled = [];
  for (const s of d.sockets) {
    const tr = el("tr", "socket" + (s.stalled ? " stalled" : ""));
    tr.dataset.address = s.address;
    const a = cell("Address", "name addr"); a.textContent = s.address; tr.appendChild(a);
    const l = cell("Replies from", "addr"); l.textContent = s.localAddress; tr.appendChild(l);
    const last = cell("Last received", "last"); last.textContent = lastText(s.last); tr.appendChild(last);
    const rin = cell("In", "num in"); rate(rin, s.stats, "in"); tr.appendChild(rin);
    const rout = cell("Out", "num out"); rate(rout, s.stats, "out"); tr.appendChild(rout);
    const dr = cell("Drops", "num drops"); drops(dr, s.stats); tr.appendChild(dr);
    const since = cell("Since", "since"); since.textContent = new Date(s.since).toLocaleTimeString(); tr.appendChild(since);
    rows.push(tr);
    if (s.stalled) stalled.push(s);
  }
  if (!rows.length) {
    const tr = el("tr", "empty");
    const td = el("td", "", "No client has sent anything within the client timeout.");
    td.colSpan = 7;
    tr.appendChild(td);
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  const up = d.upstream;
  $("upstream").textContent = `To WireGuard at ${d.dstAddress}: ${si(up.rates.txPps, "pkt/s")}; replies ${si(up.rates.rxPps, "pkt/s")}` +
    (d.noClient ? `; replies dropped with no client address live: ${d.noClient}` : "");
  return stalled.map((s) => `${s.address} has sent nothing for ${lastText(s.last).replace(" ago", "")} while other addresses send.`);
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
