// The lanes board: polls the shared snapshot every second and draws it; acts through
// api/ (relative to the page at board/: any prefix works) with the session cookie (the page never holds the API key).
"use strict";

const LANES = ["high", "medium", "low"];
const $ = (selector) => document.querySelector(selector);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "style") node.style.cssText = value;  // CSSOM: allowed by the CSP
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function call(path, options) {
  const init = options || {};
  if (init.json !== undefined) {
    init.method = init.method || "POST";
    init.headers = { "Content-Type": "application/json" };
    init.body = JSON.stringify(init.json);
  }
  const answer = await fetch("api/" + path, { credentials: "same-origin", ...init });
  if (answer.status === 401) { location.reload(); throw new Error("signed out"); }
  const data = await answer.json();
  if (!answer.ok) throw new Error(data.detail || answer.statusText);
  return data;
}

function seconds(value) {
  if (value >= 3600) return (value / 3600).toFixed(1) + " h";
  if (value >= 60) return (value / 60).toFixed(1) + " min";
  return value.toFixed(value < 10 ? 1 : 0) + " s";
}

function clock(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });
}

function active(row, snap) {
  // In use now or in the charted minutes, or paused, or on an advertised limit.
  return row.used > 0 || row.cooldown > 0 || row.quota_pause > 0 || row.limit_source !== "configured"
    || snap.history.some((point) => (point.used[row.budget] || []).some((count) => count > 0));
}

// --- markets -------------------------------------------------------------------------

function chart(name, history, limit) {
  // The last minutes of usage by lane, stacked, against the limit (inline SVG).
  const width = 300, height = 70;
  const points = history.filter((snap) => snap.used[name]);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "chart");
  if (points.length < 2) return svg;
  const top = Math.max(limit, ...points.map((snap) => snap.used[name].reduce((a, b) => a + b, 0)), 1);
  const x = (i) => (i / (points.length - 1)) * width;
  const y = (value) => height - (value / top) * (height - 4);
  // Stacked from the bottom: low, then medium, then high on top.
  const order = [2, 1, 0];
  let below = points.map(() => 0);
  for (const index of order) {
    const above = points.map((snap, i) => below[i] + snap.used[name][index]);
    const path = above.map((v, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join("")
      + below.map((v, i) => `L${x(points.length - 1 - i).toFixed(1)},${y(below[points.length - 1 - i]).toFixed(1)}`).join("")
      + "Z";
    const area = document.createElementNS("http://www.w3.org/2000/svg", "path");
    area.setAttribute("d", path);
    area.setAttribute("class", LANES[index]);
    area.setAttribute("fill", getComputedStyle(document.documentElement).getPropertyValue("--" + LANES[index]));
    area.setAttribute("opacity", "0.8");
    svg.append(area);
    below = above;
  }
  const line = document.createElementNS("http://www.w3.org/2000/svg", "line");
  line.setAttribute("x1", "0"); line.setAttribute("x2", String(width));
  line.setAttribute("y1", String(y(limit))); line.setAttribute("y2", String(y(limit)));
  line.setAttribute("stroke", "#1c2833"); line.setAttribute("stroke-dasharray", "4 3");
  svg.append(line);
  return svg;
}

function budgetCard(row, snap) {
  const limit = Math.max(row.limit, 1);
  const bar = el("div", { class: "bar", title: `${row.used} of ${row.limit} per ${row.seconds} s` });
  let left = 0;
  for (const lane of LANES) {
    const share = (row.in_window[lane] / limit) * 100;
    bar.append(el("span", { class: lane, style: `left:${left}%;width:${share}%` }));
    left += share;
  }
  for (const lane of ["medium", "low"]) {
    bar.append(el("span", { class: "mark", style: `left:${snap.lanes[lane] * 100}%`,
      title: `${lane} ceiling ${Math.round(snap.lanes[lane] * 100)} %` }));
  }
  const tags = [];
  const now = snap.at;
  if (row.cooldown > 0) {
    tags.push(el("span", { class: "tag hot cooldown" },
      `cooldown ${seconds(row.cooldown)} (level ${row.level}, ends ${clock(now + row.cooldown)})`));
  }
  if (row.quota_pause > 0) {
    tags.push(el("span", { class: "tag hot quota" },
      `quota pause ${seconds(row.quota_pause)} (ends ${clock(now + row.quota_pause)})`));
  }
  tags.push(row.limit_source === "configured"
    ? el("span", { class: "tag limit" }, `limit ${row.limit}/${row.seconds}s configured`)
    : el("span", { class: "tag warn limit" },
      `limit ${row.limit}/${row.seconds}s from ${row.limit_source} (configured ${row.configured}, ${seconds(row.advertised_for)} left)`));
  const ahead = LANES.reduce((sum, lane) => sum + row.reserved[lane], 0);
  if (ahead) tags.push(el("span", { class: "tag" }, `${ahead} reserved ahead`));
  return el("div", { class: active(row, snap) ? "card budget" : "card budget idle", "data-budget": row.budget,
      "data-used-high": row.in_window.high, "data-used-medium": row.in_window.medium,
      "data-used-low": row.in_window.low, "data-cooldown": row.cooldown },
    el("h3", {}, el("span", {}, row.budget), el("span", { class: "used" }, `${row.used}/${row.limit}`)),
    bar,
    el("div", { class: "legend" }, LANES.map((lane) =>
      el("span", { class: "lane-" + lane }, el("i", { class: lane }), `${lane} ${row.in_window[lane]}`))),
    chart(row.budget, snap.history, row.limit),
    el("div", { class: "tags" }, tags));
}

// --- queues --------------------------------------------------------------------------

function cell(value) {
  return el("td", { class: "num" }, value === null ? "missing" : value);
}

function age(value) {
  return el("td", { class: "num age" }, value === null || value === undefined ? "-" : seconds(value));
}

function deadQueueRow(queue) {
  return el("tr", { "data-dead-queue": `${queue.market}:${queue.lane}` },
    el("td", {}, queue.market), el("td", {}, queue.lane),
    cell(queue.dead_letter), cell(queue.dead_letter_in_flight), age(queue.dead_letter_oldest_age),
    cell(queue.dead_lettered_per_minute), cell(queue.replayed_per_minute), cell(queue.discarded_per_minute));
}

function queueRow(queue, snap) {
  const flag = snap.paused[`${queue.market}:${queue.lane}`];
  const action = flag ? "resume" : "pause";
  return el("tr", { "data-queue": `${queue.market}:${queue.lane}` },
    el("td", {}, queue.market), el("td", {}, queue.lane),
    cell(queue.visible), cell(queue.in_flight), cell(queue.delayed), age(queue.oldest_age),
    cell(queue.done_per_minute), cell(queue.failed_per_minute), cell(queue.dead_lettered_per_minute),
    el("td", { class: flag ? "paused state" : "state" },
      flag ? `paused by ${flag.by} at ${flag.at}` : "running"),
    el("td", {}, el("button", { type: "button", class: action,
      onclick: () => control(queue.market, queue.lane, action) }, action)));
}

async function control(market, lane, action) {
  try {
    await call(`lanes/${encodeURIComponent(market)}/${lane}/${action}`, { method: "POST" });
    refreshSoon();
  } catch (error) { problem(error); }
}

// --- sellers -------------------------------------------------------------------------

function sellerRows(rows) {
  return rows.map((row) => el("tr", { "data-seller": row.seller },
    el("td", {}, `${row.market}:${row.endpoint}`), el("td", {}, row.seller),
    el("td", { class: "num" }, `${row.used}/${row.limit}`),
    el("td", {}, row.cooldown > 0 ? `${seconds(row.cooldown)}` : "-")));
}

async function searchSellers() {
  const text = $("#seller-q").value.trim();
  if (!text) return;
  try {
    const rows = await call("sellers?q=" + encodeURIComponent(text));
    $("#sellers tbody").replaceChildren(...sellerRows(rows));
  } catch (error) { problem(error); }
}

// --- the snapshot --------------------------------------------------------------------

let timer = null;
let marketsFilled = false;

function fillMarkets(names) {
  if (marketsFilled) return;
  for (const select of [$("#seller-market"), $("#dead-market")]) {
    select.replaceChildren(...names.map((name) => el("option", {}, name)));
  }
  marketsFilled = true;
}

function draw(snap) {
  fillMarkets(snap.markets);
  $("#updated").textContent = "updated " + clock(snap.at);
  $("#who").textContent = "signed in as " + snap.who;
  const problemLine = $("#problem");
  problemLine.hidden = !snap.budgets_error;
  problemLine.textContent = snap.budgets_error ? "budgets: " + snap.budgets_error : "";
  // Busy budgets first (a stable sort keeps the server's order among equals).
  const rows = [...snap.budgets].sort((a, b) => active(b, snap) - active(a, snap));
  $("#budgets").replaceChildren(...rows.map((row) => budgetCard(row, snap)));
  if (!snap.budgets.length) $("#budgets").append(el("p", { class: "muted" }, "no budgets in use"));
  $("#queues tbody").replaceChildren(...snap.queues.map((queue) => queueRow(queue, snap)));
  $("#dead-queues tbody").replaceChildren(...snap.queues.map(deadQueueRow));
  const late = Object.entries(snap.lateness || {});
  $("#lateness").textContent = late.length
    ? "lateness of admitted requests (all workers, last hour): " + late.map(([k, v]) => `${k} ${v}`).join(", ")
    : "";
  $("#seller-count").textContent = `${snap.seller_budgets} per-seller budgets in use; the busiest below`;
  if (!$("#seller-q").value.trim()) {
    $("#sellers tbody").replaceChildren(...sellerRows(snap.busiest_sellers));
  }
}

async function refresh() {
  try {
    draw(await call("snapshot"));
  } catch (error) {
    problem(error);
  }
  timer = setTimeout(refresh, 1000);
}

function refreshSoon() {
  clearTimeout(timer);
  timer = setTimeout(refresh, 50);
}

function problem(error) {
  const line = $("#problem");
  line.hidden = false;
  line.textContent = String(error.message || error);
}

// --- a job, a seller's jobs ------------------------------------------------------------

async function lookUpJob(event) {
  event.preventDefault();
  const id = $("#job-id").value.trim();
  const out = $("#job");
  try {
    const record = await call("jobs/" + encodeURIComponent(id));
    out.replaceChildren(
      el("p", { class: "job-state state-" + record.state }, `${record.state}`,
        record.reason ? ` — ${record.reason}` : ""),
      el("pre", { class: "job-record" }, JSON.stringify(record, null, 2)));
  } catch (error) {
    out.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

async function sellerJobs(event) {
  event.preventDefault();
  const market = $("#seller-market").value;
  const seller = $("#seller-id").value.trim();
  const out = $("#seller-jobs");
  try {
    // Every record the seller's index keeps (its newest 1000, over the records' lifetime).
    const records = await call(`sellers/${encodeURIComponent(market)}/${encodeURIComponent(seller)}/jobs?limit=1000`);
    const state = $("#seller-state").value;
    const shown = state ? records.filter((record) => record.state === state) : records;
    const counts = {};
    for (const record of records) {
      const key = `${record.lane} ${record.state}`;
      counts[key] = (counts[key] || 0) + 1;
    }
    out.replaceChildren(
      el("p", { class: "muted" }, records.length ? Object.entries(counts).map(([k, v]) => `${k}: ${v}`).join(", ") : "no recent jobs"),
      el("div", { class: "scroll" }, el("table", {},
        el("thead", {}, el("tr", {}, ["id", "lane", "kind", "state", "updated", "reason / error"].map((h) => el("th", {}, h)))),
        el("tbody", {}, shown.map((record) => el("tr", { "data-job": record.id, "data-state": record.state },
          el("td", {}, record.id), el("td", {}, record.lane), el("td", {}, record.kind),
          el("td", {}, record.state), el("td", {}, record.updated_at),
          el("td", {}, record.reason || record.error || "")))))));
  } catch (error) {
    out.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

// --- dead letters ----------------------------------------------------------------------

let deadLane = null;

function picked(group) {
  return [...document.querySelectorAll(`input[data-group="${group}"]:checked`)].map((box) => box.value);
}

function ask(text, action) {
  $("#dead-confirm-text").textContent = text;
  $("#dead-confirm").hidden = false;
  $("#dead-confirm-yes").onclick = async () => { $("#dead-confirm").hidden = true; await action(); };
  $("#dead-confirm-no").onclick = () => { $("#dead-confirm").hidden = true; };
}

async function replayIds(ids) {
  const pick = { ...deadLane, ids };
  try {
    const dry = await call("replay", { json: { ...pick, dry_run: true } });
    ask(`Dry run: would move ${dry.would_move} of ${ids.length} to ${pick.market} ${pick.lane}. Move them?`,
      async () => {
        const done = await call("replay", { json: { ...pick, dry_run: false } });
        await listDead(null, `moved ${done.moved}`
          + (done.left_in_dead_letter ? ` (${done.left_in_dead_letter} also still in the dead-letter queue)` : ""));
      });
  } catch (error) { problem(error); }
}

async function discardIds(ids) {
  const pick = { ...deadLane, ids };
  ask(`Delete ${ids.length} dead letter(s) of ${pick.market} ${pick.lane} for good?`, async () => {
    try {
      const done = await call("discard", { json: pick });
      await listDead(null, `deleted ${done.deleted}`);
    } catch (error) { problem(error); }
  });
}

function groupBox(group, index) {
  const ids = group.jobs.map((job) => job.message_id);
  return el("div", { class: "group", "data-reason": group.reason },
    el("h3", {}, `${group.count} x ${group.reason}`),
    el("div", { class: "inline" },
      el("button", { type: "button", class: "replay-group", onclick: () => replayIds(ids) }, "Replay group"),
      el("button", { type: "button", class: "replay-picked",
        onclick: () => { const chosen = picked(index); if (chosen.length) replayIds(chosen); } }, "Replay selected"),
      el("button", { type: "button", class: "discard-picked",
        onclick: () => { const chosen = picked(index); if (chosen.length) discardIds(chosen); } }, "Delete selected")),
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ["", "kind", "seller", "attempts", "first attempt", "last attempt", "age", "error"].map((h) => el("th", {}, h)))),
      el("tbody", {}, group.jobs.map((job) => el("tr", {},
        el("td", {}, el("input", { type: "checkbox", value: job.message_id, "data-group": index })),
        el("td", {}, job.kind || "?"), el("td", {}, job.seller || "?"), el("td", { class: "num" }, job.attempts),
        el("td", { class: "first-attempt" }, job.first_attempt_at || "?"),
        el("td", { class: "last-attempt" }, job.last_attempt_at || "?"), el("td", {}, seconds(job.age)), el("td", {}, job.error || "")))))));
}

async function listDead(event, done) {
  if (event) event.preventDefault();
  deadLane = { market: $("#dead-market").value, lane: $("#dead-lane").value };
  const before = done ? done + "; " : "";
  $("#dead-status").textContent = before + "looking…";
  try {
    const report = await call(`dead-letters?market=${encodeURIComponent(deadLane.market)}&lane=${deadLane.lane}`);
    $("#dead-status").textContent = before
      + `${report.would_move} dead letter(s) in ${report.groups.length} group(s)`;
    $("#dead-groups").replaceChildren(...report.groups.map(groupBox));
  } catch (error) {
    $("#dead-status").textContent = "";
    problem(error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#job-form").addEventListener("submit", lookUpJob);
  $("#seller-form").addEventListener("submit", sellerJobs);
  $("#dead-form").addEventListener("submit", listDead);
  $("#seller-search").addEventListener("submit", (event) => { event.preventDefault(); searchSellers(); });
  $("#seller-q").addEventListener("input", searchSellers);
  refresh();
});
