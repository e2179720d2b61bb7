// engarde's web page: polls /api/v1/get-list and /api/v1/history every
// second and draws them: the tunnel's state at the top, a row per link
// (client) or client address (server), ten minutes of history as inline
// SVG sparklines, and the last changes of state.
// Plain DOM, no framework, no build step; text is only ever set with
// textContent, so a label cannot inject markup.
"use strict";

const REFRESH_MS = 1000;
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

// api is the absolute URL of an endpoint, built from the page's origin and
// directory. A relative URL would inherit credentials typed into the
// address bar (http://user:pass@host/), and fetch refuses any URL that
// carries credentials; location.origin never does.
const BASE = location.origin + location.pathname.replace(/[^/]*$/, "");
function api(path) { return BASE + path; }

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

function cell(label, cls) {
  const td = el("td", cls);
  td.dataset.label = label;
  return td;
}

// dash writes "–" into a cell with nothing to show; on a phone such a
// cell takes no line.
function dash(td) {
  td.textContent = "–";
  td.classList.add("empty");
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

// when writes a moment: the time of day when it is today, with the date
// before it otherwise (and the year when it is not this year).
function when(t) {
  const d = t instanceof Date ? t : new Date(t);
  if (isNaN(d) || d.getFullYear() < 2000) return "–";
  const now = new Date();
  const time = d.toLocaleTimeString();
  if (d.toDateString() === now.toDateString()) return time;
  const opts = { day: "numeric", month: "short" };
  if (d.getFullYear() !== now.getFullYear()) opts.year = "numeric";
  return d.toLocaleDateString(undefined, opts) + " " + time;
}

// addr appends an address to a node: unbreakable, except after the colons
// of an IPv6 address, so that a narrow screen never splits a number.
function addr(node, text) {
  const span = el("span", "ap");
  const v6 = text.includes("[") || (text.match(/:/g) || []).length > 1;
  if (!v6) {
    span.textContent = text;
  } else {
    const parts = text.split(":");
    parts.forEach((p, i) => {
      span.appendChild(document.createTextNode(p + (i < parts.length - 1 ? ":" : "")));
      if (i < parts.length - 1) span.appendChild(document.createElement("wbr"));
    });
  }
  node.appendChild(span);
}

// rate writes packets and bits per second into a cell.
function rate(td, stats, dir) {
  if (!stats) { dash(td); return; }
  const span = el("span", "rate");
  const r = stats.rates;
  span.textContent = si(dir === "in" ? r.rxPps : r.txPps, "pkt/s");
  span.appendChild(el("small", "", si(dir === "in" ? r.rxBps : r.txBps, "bit/s")));
  td.appendChild(span);
}

function drops(td, stats) {
  if (!stats) { dash(td); return; }
  const d = stats.drops;
  td.textContent = String(d.total);
  td.title = `full ${d.full}, timeout ${d.timeout}, error ${d.error}, closed ${d.closed}, oversize ${d.oversize}; send errors ${stats.sendErrors}`;
}

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

function lossClass(td, v) {
  if (v === null || v === undefined) return;
  if (v >= LOSS_BAD) td.classList.add("bad");
  else if (v >= LOSS_WARN) td.classList.add("warn");
}

// Quality: what share of the session's messages a link delivered first,
// what share it missed, how late its copies came. Figures the engine has
// not measured yet are null and show as a dash.
// qualityCells appends first share, missed and lateness cells to tr; best
// marks the link that delivers first most often among its peers.
function qualityCells(tr, q, best) {
  const first = cell("First", "num first");
  const loss = cell("Missed", "num loss");
  const late = cell("Late p50 / p99", "num late");
  if (!q) {
    dash(first); dash(loss); dash(late);
  } else {
    first.textContent = pct(q.firstShare);
    if (best) first.classList.add("best");
    loss.textContent = pct(q.lossRate);
    lossClass(loss, q.lossRate);
    late.textContent = q.lateP50Ms == null ? "–" : `${ms(q.lateP50Ms)} / ${ms(q.lateP99Ms)} ms`;
    const t = `${q.samples} sampled messages: ${q.first} first, ${q.copies} late, ${q.lost} missed`;
    first.title = loss.title = late.title = t;
  }
  tr.append(first, loss, late);
}

// probeCells appends the probes' round trip (with jitter) and loss.
function probeCells(tr, p, hasSocket) {
  const rtt = cell("RTT p50 / p99", "num rtt");
  const loss = cell("Loss", "num ploss");
  if (!p) {
    dash(rtt); dash(loss);
    if (hasSocket) rtt.title = loss.title = "no probes on this link";
  } else {
    if (p.rttP50Ms == null) {
      rtt.textContent = "no answer";
    } else {
      // One box, so that a phone's line keeps the jitter beside it.
      const v = el("span", "", `${ms(p.rttP50Ms)} / ${ms(p.rttP99Ms)} ms`);
      v.appendChild(el("small", "", `± ${ms(p.jitterMs)} ms jitter`));
      rtt.appendChild(v);
    }
    loss.textContent = pct(p.loss);
    lossClass(loss, p.loss);
    const t = `${p.sent} probes sent, ${p.answered} answered; ${p.lost} of the last ${p.window} unanswered; last answer ${lastText(p.lastAnswer)}`;
    rtt.title = loss.title = t;
  }
  tr.append(rtt, loss);
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
    const r = await fetch(api(path), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : "{}",
    });
    if (!r.ok) {
      const e = await r.json().catch(() => ({ error: r.statusText }));
      showAlert([`${path}: ${e.error}`]);
    }
  } catch (e) {
    showAlert([`${path}: ${e}`]);
  } finally {
    busy = false;
    refresh();
  }
}

function showAlert(lines) {
  const a = $("alert");
  a.replaceChildren(...lines.map((l) => el("p", "", l)));
  a.hidden = !lines.length;
}

// linkState is the state a link shows: the API's state, or for an engine
// older than it, the original status and the stall flag.
function linkState(i) {
  if (i.state) return i.state;
  if (i.stalled) return "stalled";
  return i.status === "idle" ? "down" : i.status;
}

// quiet is an interface that is not meant to carry: excluded, or skipped
// as loopback. It is drawn grey and small, never as a failure.
function quiet(state, reason) {
  return state === "excluded" || (state === "down" && reason === "loopback");
}

function who(i) { return i.name + (i.label ? " (" + i.label + ")" : ""); }

function stateCell(state, reason, age, since) {
  const st = cell("State", "status");
  const q = quiet(state, reason);
  st.appendChild(el("span", "badge " + (q ? "quiet" : state), state));
  if (reason && state !== "active" && state !== "excluded") st.appendChild(el("span", "reason", reason));
  if (age) {
    const a = el("span", "age", "for " + duration(age));
    a.title = "since " + when(Date.now() - age * 1000);
    st.appendChild(a);
  } else if (since) {
    st.appendChild(el("span", "age", "since " + when(since)));
  }
  return st;
}

function drawClient(d) {
  const tbody = $("links").tBodies[0];
  const rows = [];
  const problems = [];
  const best = bestOf(d.interfaces);
  for (const i of d.interfaces) {
    const state = linkState(i);
    const q = quiet(state, i.reason);
    // A quiet row takes none of its state's colours.
    const tr = el("tr", "link " + (q ? "quiet compact" : state));
    tr.dataset.name = i.name;
    tr.dataset.status = i.status;
    tr.dataset.state = state;

    const name = cell("Interface", "name");
    name.appendChild(el("span", "", i.name));
    if (i.label) name.appendChild(el("span", "label", i.label));
    tr.appendChild(name);

    tr.appendChild(stateCell(state, i.reason, i.stateAge));

    const a = cell("Source → destination", "addr");
    if (!i.senderAddress && !i.dstAddress) {
      dash(a);
    } else {
      // One box for both, so that a phone's line keeps them together.
      const both = el("span", "pair");
      addr(both, i.senderAddress || "–");
      both.appendChild(document.createTextNode(" → "));
      addr(both, i.dstAddress || "–");
      a.appendChild(both);
    }
    tr.appendChild(a);

    const last = cell("Last received", "last");
    if (i.stats) last.textContent = lastText(i.last); else dash(last);
    tr.appendChild(last);

    probeCells(tr, i.probe, !!i.stats);
    qualityCells(tr, i.quality, i === best);
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
    const held = i.stateAge ? ", for " + duration(i.stateAge) : "";
    if (state === "stalled") {
      problems.push(i.reason ? `${who(i)} is stalled: ${i.reason}${held}.` :
        `${who(i)} has received nothing ${i.last == null ? "yet" : "for " + lastText(i.last).replace(" ago", "")} while other links receive.`);
    } else if (state === "down" && !q) {
      problems.push(`${who(i)} is down: ${i.reason || "no link"}${held}.`);
    }
  }
  tbody.replaceChildren(...rows);
  const wg = d.wireguard;
  $("wireguard").textContent = `WireGuard side ${d.listenAddress}: from WireGuard ${si(wg.rates.rxPps, "pkt/s")}, to WireGuard ${si(wg.rates.txPps, "pkt/s")}` +
    (d.noLink ? `; dropped with no link up: ${d.noLink}` : "") +
    (d.foreign ? `; dropped from another address than WireGuard's: ${d.foreign}` : "");
  return problems;
}

const SERVER_COLUMNS = 11;

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
    `${live} of ${count(ss.addresses.length, "address", "addresses")} live · ${count(ss.indexes.length, "index", "indexes")} · to WireGuard ${si(r.txPps, "pkt/s")}, replies ${si(r.rxPps, "pkt/s")} · since ${when(ss.since)}` +
    (ss.anyUDP ? " · forwardAnyUDP" : "")));
  tr.appendChild(th);
  return tr;
}

function socketState(s) {
  return s.state || (s.stalled ? "stalled" : "active");
}

function socketRow(s, best) {
  const state = socketState(s);
  const tr = el("tr", "socket " + state + (s.live === false ? " silent" : ""));
  tr.dataset.address = s.address;
  tr.dataset.state = state;
  const a = cell("Address", "name addr"); addr(a, s.address); tr.appendChild(a);
  const st = cell("State", "status");
  st.appendChild(el("span", "badge " + state, state));
  if (s.live === false) st.appendChild(el("span", "badge silent", "silent"));
  if (s.slot !== undefined) st.appendChild(el("span", "age", "link " + s.slot));
  tr.appendChild(st);
  const l = cell("Replies from", "addr"); addr(l, s.localAddress); tr.appendChild(l);
  const last = cell("Last received", "last"); last.textContent = lastText(s.last); tr.appendChild(last);
  const rin = cell("In", "num in"); rate(rin, s.stats, "in"); tr.appendChild(rin);
  const rout = cell("Out", "num out"); rate(rout, s.stats, "out"); tr.appendChild(rout);
  const dr = cell("Drops", "num drops"); drops(dr, s.stats); tr.appendChild(dr);
  qualityCells(tr, s.quality, s === best);
  const since = cell("Since", "since when"); since.textContent = when(s.since); tr.appendChild(since);
  return tr;
}

function drawServer(d) {
  const table = $("sockets");
  const bodies = [];
  const problems = [];
  // Group by session; an older engarde without sessions gets one group.
  const groups = d.sessions ? d.sessions : [{ addresses: d.sockets }];
  for (const ss of groups) {
    const tbody = el("tbody", "");
    if (ss.id !== undefined) tbody.appendChild(sessionRow(ss));
    const best = bestOf(ss.addresses);
    for (const s of ss.addresses) {
      tbody.appendChild(socketRow(s, best));
      if (socketState(s) === "stalled") {
        problems.push(`${s.address}${ss.id !== undefined ? " (session " + ss.id + ")" : ""} has sent nothing for ${lastText(s.last).replace(" ago", "")} while other addresses of its session send.`);
      }
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
  return problems;
}

// drawTunnel shows the tunnel's state at the top; a tunnel down is a
// problem for the banner too.
function drawTunnel(d) {
  const t = d.tunnel;
  const box = $("tunnel");
  if (!t) { box.hidden = true; return []; }
  box.hidden = false;
  box.className = "tunnel " + t.state;
  box.dataset.state = t.state;
  $("tunnel-state").className = "tstate " + t.state;
  $("tunnel-state").textContent = t.state;
  $("tunnel-reason").textContent = t.reason || "";
  $("tunnel-since").textContent = t.since && new Date(t.since).getFullYear() > 2000 ? "since " + when(t.since) : "";
  $("tunnel-probes").textContent = t.probes === "unanswered" ? "probes: the server never answers them (an original engarde server?)" : t.probes ? "probes " + t.probes : "";
  return t.state === "down" ? [`Tunnel down${t.reason ? ": " + t.reason : ""}.`] : [];
}

function drawEvents(d) {
  const sec = $("events");
  if (!d.events) { sec.hidden = true; return; }
  sec.hidden = false;
  const items = d.events.slice(-30).reverse().map((e) => {
    const li = el("li", "event");
    li.dataset.to = e.to;
    li.dataset.link = e.link || "";
    li.appendChild(el("span", "when", when(e.at)));
    li.appendChild(el("span", "what", e.link || "tunnel"));
    li.appendChild(el("span", "badge " + (quiet(e.from, e.reason) ? "quiet" : e.from), e.from || "–"));
    li.appendChild(document.createTextNode("→"));
    li.appendChild(el("span", "badge " + (quiet(e.to, e.reason) ? "quiet" : e.to), e.to));
    if (e.reason) li.appendChild(el("span", "reason", e.reason));
    return li;
  });
  if (!items.length) items.push(el("li", "note", "No change of state since the start."));
  $("event-list").replaceChildren(...items);
}

// The history, as the page holds it: the times of the samples (Unix ms)
// and, per series key, its values aligned on them. Each refresh asks only
// for the samples after the last one held.
const FIELDS = ["state", "rttP50Ms", "loss", "missed", "rxPps", "txPps"];
const hist = { times: [], series: new Map(), states: [], length: 600, step: 1, last: 0, started: null, refused: 0 };

function mergeHistory(h) {
  hist.states = h.states;
  hist.length = h.length;
  hist.step = h.step;
  hist.refused = h.refused;
  const held = hist.times.length;
  hist.times.push(...h.times);
  const keys = new Set();
  for (const s of h.series) {
    keys.add(s.key);
    let cur = hist.series.get(s.key);
    if (!cur) {
      cur = {};
      for (const f of FIELDS) cur[f] = new Array(held).fill(null);
      hist.series.set(s.key, cur);
    }
    cur.meta = s;
    for (const f of FIELDS) cur[f].push(...s[f]);
  }
  // A series the server no longer holds is gone from its whole window.
  for (const k of [...hist.series.keys()]) if (!keys.has(k)) hist.series.delete(k);
  const drop = hist.times.length - hist.length;
  if (drop > 0) {
    hist.times.splice(0, drop);
    for (const cur of hist.series.values()) for (const f of FIELDS) cur[f].splice(0, drop);
  }
  if (h.times.length) hist.last = h.times[h.times.length - 1];
}

function resetHistory() {
  hist.times = [];
  hist.series = new Map();
  hist.last = 0;
}

// W and H are the sparklines' drawing box; the SVG stretches it to its
// cell, strokes keep their width.
const W = 300, H = 40;

// MIN_SPAN_MS is the shortest window drawn: a page opened a few seconds
// after the start draws them over a minute, not as a sliver at the right
// of ten.
const MIN_SPAN_MS = 60000;

// spanMs is the window drawn: what is held, from a minute to the
// history's length.
function spanMs() {
  const full = hist.length * hist.step * 1000;
  if (!hist.times.length) return full;
  const held = hist.times[hist.times.length - 1] - hist.times[0] + hist.step * 1000;
  return Math.min(full, Math.max(MIN_SPAN_MS, held));
}

// xOf places a sample time on the window that ends at the newest sample.
function xOf(t) {
  const end = hist.times.length ? hist.times[hist.times.length - 1] : Date.now();
  return Math.max(0, W - (end - t) / spanMs() * W);
}

// spark draws series (lists of values aligned on hist.times, null where
// nothing was measured) in one box scaled to their common maximum (at
// least floor). Gaps break the line. Each path says how many points it
// drew in data-points.
// label names the chart for screen readers and the tooltip, with its
// scale.
function spark(lines, floor, label) {
  let top = floor;
  for (const l of lines) for (const v of l.values) if (v !== null && v > top) top = v;
  const s = svg("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" });
  if (label) {
    const text = `${label}, last ${duration(spanMs() / 1000)}; top of the scale ${+top.toPrecision(3)}`;
    s.setAttribute("aria-label", text);
    s.appendChild(svg("title")).textContent = text;
  }
  s.appendChild(svg("line", { class: "base", x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5 }));
  for (const l of lines) {
    let d = "", pen = false, n = 0;
    l.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const x = xOf(hist.times[i]).toFixed(1);
      const y = (H - 1 - v / top * (H - 4)).toFixed(1);
      d += (pen ? "L" : "M") + x + " " + y;
      pen = true;
      n++;
    });
    const p = svg("path", { class: l.cls, d: d || "M0 0" });
    p.dataset.points = n;
    s.appendChild(p);
  }
  s.dataset.max = top;
  return s;
}

// strip draws a series' states as coloured runs.
function strip(codes) {
  const s = svg("svg", { class: "strip", viewBox: `0 0 ${W} 4`, preserveAspectRatio: "none" });
  let start = 0;
  for (let i = 1; i <= codes.length; i++) {
    if (i < codes.length && codes[i] === codes[start]) continue;
    const c = codes[start];
    if (c !== null && c !== 0) {
      const x0 = xOf(hist.times[start]);
      const x1 = i < codes.length ? xOf(hist.times[i]) : W;
      const r = svg("rect", { class: "st-" + hist.states[c], x: x0.toFixed(1), y: 0, width: Math.max(0.5, x1 - x0).toFixed(1), height: 4 });
      r.appendChild(svg("title")).textContent = hist.states[c];
      s.appendChild(r);
    }
    start = i;
  }
  return s;
}

function lastOf(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
  return null;
}

function hrow(label, chart, value) {
  const r = el("div", "hrow");
  r.append(el("span", "hl", label), chart, el("span", "hv", value));
  return r;
}

function rateRow(cur) {
  const rx = lastOf(cur.rxPps), tx = lastOf(cur.txPps);
  return hrow("In / out", spark([{ cls: "rx", values: cur.rxPps }, { cls: "tx", values: cur.txPps }], 1, "packets per second in and out"),
    rx === null ? "–" : `${si(rx, "")}/${si(tx, "")}`);
}

// card draws one series' history: a state strip, then RTT and loss (of
// the probes, or the share missed when there are none) and the rates.
// A sub line, if any, goes under the title (a slot's address).
function card(key, cur, title, label, stateNow, sub) {
  const c = el("div", "hist " + stateNow);
  c.dataset.key = key;
  const head = el("div", "hhead");
  head.appendChild(el("b", "", title));
  if (label) head.appendChild(el("span", "label", label));
  head.appendChild(el("span", "badge " + stateNow, stateNow));
  c.appendChild(head);
  if (sub) { const d = el("div", "hsub addr"); addr(d, sub); c.appendChild(d); }
  c.appendChild(strip(cur.state));
  if (cur.rttP50Ms.some((v) => v !== null)) {
    const v = lastOf(cur.rttP50Ms);
    c.appendChild(hrow("RTT p50", spark([{ cls: "rtt", values: cur.rttP50Ms }], 1, "probe round trip, median, ms"), v === null ? "–" : ms(v) + " ms"));
  }
  const probed = cur.loss.some((v) => v !== null);
  const loss = probed ? cur.loss : cur.missed;
  c.appendChild(hrow(probed ? "Loss" : "Missed", spark([{ cls: "loss", values: loss.map((v) => v === null ? null : v * 100) }], 5,
    probed ? "probes unanswered, %" : "messages missed while another link delivered them, %"), pct(lastOf(loss))));
  c.appendChild(rateRow(cur));
  return c;
}

function drawHistory(d) {
  const sec = $("history");
  if (!hist.times.length) { sec.hidden = true; return; }
  sec.hidden = false;
  const cards = [];
  const tun = hist.series.get("tunnel");
  const chart = $("tunnel-chart");
  if (tun) {
    const dir = d.type === "client" ? ["from WireGuard", "to WireGuard"] : ["to WireGuard", "replies"];
    const legend = el("div", "legend");
    const ago = duration(spanMs() / 1000);
    legend.append(`tunnel, last ${ago}: `, el("i", "rx"), dir[0], el("i", "tx"), dir[1]);
    const axis = el("div", "axis");
    axis.append(el("span", "", ago + " ago"), el("span", "", "now"));
    const s = spark([{ cls: "rx", values: tun.rxPps }, { cls: "tx", values: tun.txPps }], 1, `packets per second ${dir[0]} and ${dir[1]}`);
    s.dataset.key = "tunnel";
    chart.replaceChildren(strip(tun.state), s, axis, legend);
  } else {
    chart.replaceChildren();
  }
  if (d.type === "client") {
    for (const i of d.interfaces) {
      const key = "link/" + i.name;
      const cur = hist.series.get(key);
      const state = linkState(i);
      if (!cur || quiet(state, i.reason)) continue;
      cards.push(card(key, cur, i.name, i.label, state));
    }
  } else {
    const keys = [...hist.series.keys()].filter((k) => k !== "tunnel").sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
    const states = new Map();
    for (const ss of d.sessions || []) for (const a of ss.addresses) states.set(a.address, a.live === false ? "down" : socketState(a));
    for (const k of keys) {
      const cur = hist.series.get(k);
      const m = cur.meta;
      const now = states.get(m.address) || "gone";
      cards.push(card(k, cur, `session ${m.session || 0} · link ${m.slot || 0}`, "", now, m.address));
    }
  }
  $("history-cards").replaceChildren(...cards);
  $("history-title").textContent = "Last " + duration(spanMs() / 1000).replace(/ 0s$/, "");
  $("history-note").textContent = hist.refused ? `${hist.refused} series not kept: the history holds at most a few hundred` : "";
}

let timer = 0;
async function refresh() {
  clearTimeout(timer);
  try {
    const r = await fetch(api("api/v1/get-list"), { cache: "no-store" });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    const d = await r.json();
    if (busy) return; // an action is under way; its refresh follows
    if (d.started !== hist.started) { resetHistory(); hist.started = d.started; }
    try {
      const hr = await fetch(api("api/v1/history" + (hist.last ? "?since=" + hist.last : "")), { cache: "no-store" });
      if (hr.ok) mergeHistory(await hr.json());
    } catch (e) {
      // An older engarde has no history: the rest of the page works.
    }
    document.body.classList.remove("stale");
    $("role").textContent = "engarde " + d.type;
    $("description").textContent = d.description || "";
    document.title = `engarde ${d.type}${d.tunnel ? " · " + d.tunnel.state : ""}${d.description ? " – " + d.description : ""}`;
    $("version").textContent = d.version;
    $("backend").textContent = d.backend || "–";
    $("uptime").textContent = duration(d.uptime || 0);
    $("listen").textContent = "listening on " + d.listenAddress;
    $("client").hidden = d.type !== "client";
    $("server").hidden = d.type !== "server";
    const problems = drawTunnel(d).concat(d.type === "client" ? drawClient(d) : drawServer(d));
    drawHistory(d);
    drawEvents(d);
    showAlert(problems);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.body.classList.add("stale");
    showAlert([`Cannot reach engarde (${e.message}); retrying.`]);
  } finally {
    timer = setTimeout(refresh, REFRESH_MS);
  }
}

$("reset").onclick = () => post("api/v1/reset-exclusions");
refresh();
