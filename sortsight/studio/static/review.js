// Keyboard review of the data doctor's flags (templates/review.html; routes_review.py).
"use strict";
(function () {
  const root = document.getElementById("review");
  if (!root) return;
  let state = JSON.parse(root.dataset.state);
  let current = state.next === null ? 0 : state.next;
  const $ = (id) => document.getElementById(id);

  function show() {
    const flags = state.flags;
    $("review-progress").textContent = flags.length
      ? `Flag ${current + 1} of ${flags.length} · ${state.decided} decided`
      : "The doctor flagged nothing to review.";
    const f = flags[current];
    $("review-card").hidden = !f;
    if (f) {
      const img = $("review-image");
      if (f.rel) { img.src = `${root.dataset.thumb}?size=320&path=${encodeURIComponent(f.rel)}`; img.hidden = false; }
      else img.hidden = true;
      $("review-name").textContent = f.path.split("/").pop() + (f.rel ? "" : " (moved)");
      $("review-why").textContent = f.why;
      $("review-score").textContent = `score ${Number(f.score).toFixed(3)}` + (f.suggested ? ` · suggested: ${f.suggested}` : "");
      $("review-decision").textContent = f.decision ? `decided: ${f.decision}` : "";
      $("review-take").disabled = !f.suggested || !!f.decision;
      $("review-keep").disabled = $("review-delete").disabled = !!f.decision;
    }
    $("review-undo").disabled = !state.can_undo;
    const body = $("review-list");
    body.replaceChildren(...flags.map((g) => {
      const tr = document.createElement("tr");
      if (g.n === current) tr.className = "on";
      for (const v of [g.n + 1, g.path.split("/").pop(), g.label, g.suggested || "—", Number(g.score).toFixed(3), g.decision || ""]) {
        const td = document.createElement("td"); td.textContent = v; tr.append(td);
      }
      tr.addEventListener("click", () => { current = g.n; show(); });
      return tr;
    }));
  }

  async function post(url) {
    $("review-error").hidden = true;
    const response = await fetch(url, { method: "POST", headers: { accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) { $("review-error").textContent = body.error || "That did not work."; $("review-error").hidden = false; return false; }
    state = body;
    return true;
  }

  async function decide(action) {
    const f = state.flags[current];
    if (!f || f.decision) return;
    if (await post(`${root.dataset.api}/${f.n}/${action}`)) { current = state.next === null ? current : state.next; show(); }
  }

  async function undo() {
    if (await post(`${root.dataset.api}/undo`)) { current = state.next === null ? current : state.next; show(); }
  }

  for (const b of root.querySelectorAll("button[data-action]")) b.addEventListener("click", () => decide(b.dataset.action));
  $("review-undo").addEventListener("click", undo);
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.matches("input, textarea, select")) return;
    const keys = { a: () => decide("take"), k: () => decide("keep"), d: () => decide("delete"), u: undo,
      ArrowRight: () => { current = Math.min(current + 1, state.flags.length - 1); show(); },
      ArrowLeft: () => { current = Math.max(current - 1, 0); show(); } };
    const run = keys[ev.key];
    if (run) { ev.preventDefault(); run(); }
  });
  show();
})();
