// sortsight studio: a few lines of plain JavaScript (no build step, no framework).
"use strict";

function el(tag, attrs, text) {
  const e = document.createElementNS(tag === "svg" || attrs && attrs.svg ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (k !== "svg") e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const COLOURS = ["#2457c5", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285"];

// Confirmation for dangerous forms.
document.addEventListener("submit", (ev) => {
  const msg = ev.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) ev.preventDefault();
});

// "Pick a whole folder" toggles the file input into a directory picker.
document.addEventListener("change", (ev) => {
  if (!ev.target.matches("[data-folder-toggle]")) return;
  const input = ev.target.closest("form").querySelector("input[type=file]");
  if (ev.target.checked) input.setAttribute("webkitdirectory", ""); else input.removeAttribute("webkitdirectory");
});

// "Estimate the time" on the Train page: post the form's settings, show the measured estimate.
document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("#estimate-training");
  if (!button) return;
  const out = document.getElementById("estimate-result");
  button.disabled = true;
  const started = Date.now();
  const ticking = setInterval(() => { out.textContent = `Measuring a short trial run… ${Math.round((Date.now() - started) / 1000)} s`; }, 1000);
  out.textContent = "Measuring a short trial run…";
  try {
    const response = await fetch(button.dataset.url, { method: "POST", body: new FormData(button.closest("form")) });
    const body = await response.json();
    out.textContent = response.ok
      ? `Training these ${body.images} images should take ${body.human}` +
        (body.finetune_human ? `, plus up to ${body.finetune_human} if fine-tuning improves on it.` : ".")
      : (body.error || body.detail || "Could not estimate.");
  } catch (err) {
    out.textContent = "Could not estimate: " + err;
  } finally {
    clearInterval(ticking);
    button.disabled = false;
  }
});

// "Find a learning rate" in the advanced settings: run the range test, show its plot, offer the rate.
document.addEventListener("click", async (ev) => {
  const use = ev.target.closest("#lr-find-use");
  if (use) {
    const field = use.closest("form").querySelector("input[name=lr]");
    if (field) field.value = use.dataset.lr;
    return;
  }
  const button = ev.target.closest("#lr-find");
  if (!button) return;
  const out = document.getElementById("lr-find-result");
  const plot = document.getElementById("lr-find-plot");
  const offer = document.getElementById("lr-find-use");
  button.disabled = true;
  offer.hidden = true;
  const started = Date.now();
  const ticking = setInterval(() => { out.textContent = `Testing learning rates… ${Math.round((Date.now() - started) / 1000)} s`; }, 1000);
  out.textContent = "Testing learning rates…";
  try {
    const response = await fetch(button.dataset.url, { method: "POST", body: new FormData(button.closest("form")) });
    const body = await response.json();
    if (response.ok) {
      const rate = Number(body.suggested).toExponential(1);
      out.textContent = `Suggested learning rate: ${rate} (where the loss falls steadily).`;
      offer.dataset.lr = rate;
      offer.textContent = `Use ${rate}`;
      offer.hidden = false;
      if (body.plot_url) { plot.src = body.plot_url; plot.hidden = false; }
    } else {
      out.textContent = body.error || body.detail || "Could not test learning rates.";
    }
  } catch (err) {
    out.textContent = "Could not test learning rates: " + err;
  } finally {
    clearInterval(ticking);
    button.disabled = false;
  }
});

// Sortable tables: click a header.
function makeSortable(table) {
  table.querySelectorAll("thead th").forEach((th, index) => {
    th.addEventListener("click", () => {
      const dir = th.dataset.dir === "asc" ? "desc" : "asc";
      table.querySelectorAll("thead th").forEach((h) => delete h.dataset.dir);
      th.dataset.dir = dir;
      const body = table.tBodies[0];
      const rows = Array.from(body.rows);
      const key = (r) => { const t = (r.cells[index] || {}).textContent || ""; const n = parseFloat(t); return isNaN(n) ? t.trim().toLowerCase() : n; };
      rows.sort((a, b) => { const x = key(a), y = key(b); return (x < y ? -1 : x > y ? 1 : 0) * (dir === "asc" ? 1 : -1); });
      rows.forEach((r) => body.appendChild(r));
    });
  });
}

// Chart titles in words.
const METRIC_NAMES = {
  val_accuracy: "Validation accuracy", val_loss: "Validation loss", train_loss: "Training loss",
  val_f1_macro: "Validation F1 score (average over classes)", val_top5_accuracy: "Validation top-5 accuracy",
  val_balanced_accuracy: "Validation balanced accuracy", val_precision_macro: "Validation precision",
  val_recall_macro: "Validation recall", val_map: "Validation mean average precision (tags)",
  val_f1_micro: "Validation F1 score (all tags together)", val_f1_samples: "Validation F1 score (per image)",
  val_hamming_loss: "Validation share of wrong tags", val_subset_accuracy: "Validation images with every tag right",
};
function metricName(key) {
  if (METRIC_NAMES[key]) return METRIC_NAMES[key];
  const words = key.replace(/^val_/, "validation ").replace(/^train_/, "training ").replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}

// The y range of a chart: fractions (accuracy, F1, …) stay within 0–1, losses never go below 0,
// and a single point (or a flat line) gets a small range around it.
function yRange(key, ys) {
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  const pad = Math.max((y1 - y0) * 0.1, Math.abs(y1) * 0.05, 0.01);
  y0 -= pad; y1 += pad;
  if (ys.every((y) => y >= 0)) y0 = Math.max(0, y0);
  if (!/loss/.test(key) && ys.every((y) => y <= 1)) y1 = Math.min(1, y1);
  return [y0, y1];
}

// Line chart of one metric, one line per candidate.
function chart(key, perCandidate) {
  const title = metricName(key);
  const W = 360, H = 200, P = 34;
  const pts = Object.values(perCandidate).flat();
  if (!pts.length) return null;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  const [y0, y1] = yRange(key, ys);
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  const sx = (x) => P + (x - x0) / (x1 - x0) * (W - P - 8), sy = (y) => H - P + 8 - (y - y0) / (y1 - y0) * (H - P - 4);
  const box = el("div", { class: "chart" });
  box.appendChild(el("h3", {}, title));
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  svg.appendChild(el("line", { svg: 1, x1: P, y1: H - P + 8, x2: W - 8, y2: H - P + 8, stroke: "#ccd" }));
  svg.appendChild(el("line", { svg: 1, x1: P, y1: 4, x2: P, y2: H - P + 8, stroke: "#ccd" }));
  [[y0, H - P + 8], [y1, 12]].forEach(([v, y]) => svg.appendChild(el("text", { svg: 1, x: 2, y, "font-size": 10, fill: "#567" }, v.toFixed(2))));
  svg.appendChild(el("text", { svg: 1, x: W / 2, y: H - 4, "font-size": 10, fill: "#567" }, "epoch"));
  const legend = el("div", { class: "legend" });
  Object.entries(perCandidate).forEach(([name, points], i) => {
    const colour = COLOURS[i % COLOURS.length];
    svg.appendChild(el("polyline", { svg: 1, fill: "none", stroke: colour, "stroke-width": 2, points: points.map((p) => `${sx(p[0])},${sy(p[1])}`).join(" ") }));
    points.forEach((p) => svg.appendChild(el("circle", { svg: 1, cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: colour })));
    const item = el("span"); const sw = el("i"); sw.style.background = colour; item.appendChild(sw); item.appendChild(document.createTextNode(name)); legend.appendChild(item);
  });
  box.appendChild(svg); box.appendChild(legend);
  return box;
}

function renderCharts(series) {
  const holder = document.getElementById("charts");
  if (!holder || !series || !Object.keys(series).length) return;
  const metrics = {};
  for (const [cand, per] of Object.entries(series)) for (const [m, pts] of Object.entries(per)) (metrics[m] = metrics[m] || {})[cand] = pts;
  holder.replaceChildren();
  Object.keys(metrics).sort().forEach((m) => { const c = chart(m, metrics[m]); if (c) holder.appendChild(c); });
}

function fmt(v) { return typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : (v === null || v === undefined ? "" : (typeof v === "object" ? JSON.stringify(v) : String(v))); }

// The leaderboard's columns a reader needs, in words; the rest is in leaderboard.json.
const BOARD = [
  ["rank", "Rank", (v) => fmt(v)],
  ["model", "Model", (v) => fmt(v)],
  ["image_size", "Image size", (v) => (v ? `${v} px` : "")],
  ["val_accuracy", "Validation accuracy", (v) => (typeof v === "number" ? `${(100 * v).toFixed(1)}%` : "")],
  ["chosen", "Kept", (v) => ({ head: "first model", finetune: "fine-tuned" }[v] || fmt(v))],
  ["seconds", "Time", (v) => (typeof v === "number" ? `${Math.round(v)} s` : "")],
];

function renderLeaderboard(rows) {
  const table = document.getElementById("leaderboard");
  if (!table || !rows || !rows.length) return;
  const cols = BOARD.filter(([key]) => rows.some((r) => r[key] !== undefined && r[key] !== null));
  const head = el("tr"); cols.forEach(([, name]) => head.appendChild(el("th", {}, name)));
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...rows.map((r) => { const tr = el("tr"); cols.forEach(([key, , show]) => tr.appendChild(el("td", {}, show(r[key])))); return tr; }));
  if (!table.dataset.sortable) { table.dataset.sortable = "1"; makeSortable(table); }
}

// Live job page: poll the job's JSON until it reaches a final state.
function followJob() {
  const box = document.getElementById("job");
  if (!box) return;
  const tick = async () => {
    let view;
    try { view = await (await fetch(box.dataset.url, { headers: { Accept: "application/json" } })).json(); } catch (err) { setTimeout(tick, 2000); return; }
    const status = document.getElementById("job-status");
    status.textContent = view.status; status.className = "status s-" + view.status;
    box.dataset.status = view.status;
    document.getElementById("job-error").textContent = view.error || "";
    const log = document.getElementById("job-log");
    if (log && view.log_tail !== undefined) { const end = log.scrollTop + log.clientHeight >= log.scrollHeight - 4; log.textContent = view.log_tail; if (end) log.scrollTop = log.scrollHeight; }
    const progress = document.getElementById("job-progress");
    const active = view.status === "running" || view.status === "queued";
    const end = view.finished || Date.now() / 1000;
    const secs = Math.max(0, Math.round(end - view.created));
    const took = `${Math.floor(secs / 60)}:${String(secs % 60).padStart(2, "0")}`;
    const estimate = document.getElementById("job-estimate");
    const told = view.estimate_seconds ? ` · estimated before the start: ${view.estimate_human}` : "";
    estimate.textContent = (active ? `Running for ${took}` : `Took ${took}`) + told;
    const bar = document.getElementById("job-bar");
    bar.hidden = !(active && typeof view.fraction === "number");
    if (typeof view.fraction === "number") bar.value = Math.round(100 * view.fraction);
    if (view.kind === "train") {
      renderCharts(view.series); renderLeaderboard(view.leaderboard);
      document.getElementById("job-headline").textContent = view.headline || "";
      progress.textContent = active ? (view.now || "") : "";
      document.getElementById("job-ready").hidden = !(active && view.model_ready);
    } else if (view.kind === "predict") {
      progress.textContent = `${view.predicted || 0} of ${view.expected || "?"} images`;
    } else {
      progress.textContent = active ? "Working…" : "";
    }
    document.getElementById("stop-form").hidden = !active;
    document.getElementById("job-done").hidden = view.status !== "finished";
    if (active) setTimeout(tick, 1000);
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach((t) => { if (t.id !== "leaderboard") makeSortable(t); });
  followJob();
});
