// The Label page: keyboard-driven labelling with the model's suggestions (plain JavaScript).
"use strict";
(() => {
  const root = document.getElementById("labeller");
  if (!root) return;
  const api = root.dataset.api, project = root.dataset.project;
  let state = null, skipped = new Set(), last = [];
  const $ = (id) => document.getElementById(id);

  function thumb(pos, size) { return `/projects/${project}/label/thumb/${pos}?size=${size}`; }
  function queue() { return state ? state.suggestions.filter((s) => !skipped.has(s.position)) : []; }

  function render() {
    const classes = $("classes");
    classes.innerHTML = "";
    state.classes.forEach((name, i) => {
      const b = document.createElement("button");
      b.type = "button"; b.className = "cls"; b.dataset.key = String(i + 1);
      b.textContent = `${i + 1} · ${name} (${state.counts[name] || 0})`;
      b.onclick = () => labelCurrent(name);
      classes.appendChild(b);
    });
    const mode = $("mode"), wanted = state.mode === "likely" ? state.target : "";
    mode.innerHTML = '<option value="">the most informative images</option>' +
      state.fitted.map((c) => `<option value="${c.replace(/"/g, "&quot;")}">most likely “${c.replace(/</g, "&lt;")}”</option>`).join("");
    mode.value = wanted;
    const acc = state.recent_accuracy === null ? "—" : `${state.recent_hits} of the last ${state.recent_guesses}`;
    $("stats").textContent = `${state.labelled} of ${state.total} labelled · model's guess right: ${acc}` +
      (state.fitted.length ? ` · head refitted in ${(state.fit_seconds * 1000).toFixed(0)} ms` : " · label two classes to get suggestions");
    $("stats").dataset.hits = state.recent_hits; $("stats").dataset.guesses = state.recent_guesses;
    const items = queue(), cur = items[0];
    const img = $("current-img");
    if (!cur) { img.removeAttribute("src"); $("current-path").textContent = "Nothing left to show."; $("current-guess").textContent = ""; }
    else {
      img.src = thumb(cur.position, 480); img.dataset.position = cur.position;
      $("current-path").textContent = cur.rel;
      $("current-guess").textContent = cur.guess ? `model's guess: ${cur.guess} (${cur.score.toFixed(2)})` : "no guess yet";
      $("current-guess").dataset.guess = cur.guess;
    }
    $("queue").innerHTML = "";
    items.slice(1).forEach((s) => {
      const i = document.createElement("img");
      i.src = thumb(s.position, 96); i.alt = s.rel; i.width = 96; i.height = 96; i.style.objectFit = "contain"; i.title = s.guess ? `${s.rel}: ${s.guess} (${s.score.toFixed(2)})` : s.rel;
      $("queue").appendChild(i);
    });
  }

  async function send(body) {
    const r = await fetch(api, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ mode: state ? state.mode : "uncertain", target: state ? state.target : "", ...body }) });
    const data = await r.json();
    if (!r.ok) { $("label-msg").textContent = "Error: " + data.error; return; }
    state = data; skipped = new Set(); $("label-msg").textContent = data.message || ""; render();
  }
  async function load(mode, target) {
    const r = await fetch(`${api}?mode=${mode}&target=${encodeURIComponent(target || "")}`);
    state = await r.json(); skipped = new Set(); render();
  }
  function labelCurrent(name) {
    const cur = queue()[0];
    if (!cur) return;
    last.push(cur.position);
    send({ positions: [cur.position], label: name });
  }
  $("mode").onchange = (e) => load(e.target.value ? "likely" : "uncertain", e.target.value);
  $("new-class").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const name = e.target.value.trim();
    if (name) send({ action: "class", label: name, positions: [] });
    e.target.value = ""; e.target.blur();
  });
  document.addEventListener("keydown", (e) => {
    if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey || !state) return;
    const cur = queue()[0];
    if (/^[1-9]$/.test(e.key) && state.classes[Number(e.key) - 1]) { e.preventDefault(); labelCurrent(state.classes[Number(e.key) - 1]); }
    else if (e.key === "s" && cur) { skipped.add(cur.position); render(); }
    else if (e.key === "u" && last.length) { send({ action: "unlabel", positions: [last.pop()] }); }
    else if (e.key === "y" && cur && state.mode === "likely") { labelCurrent(state.target); }
    else if (e.key === "n" && cur && state.mode === "likely") { send({ action: "reject", positions: [cur.position], label: state.target }); }
    else if (e.key === "m") {
      const next = state.mode === "likely" ? "" : (state.fitted[0] || "");
      load(next ? "likely" : "uncertain", next);
    }
  });
  load("uncertain", "");
})();
