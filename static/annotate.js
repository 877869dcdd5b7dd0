// The annotation page: no framework, so nothing to vendor; every action calls the JSON API.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let current = null;      // the comparison on screen
  let shownAt = 0;         // when it appeared, for latency_ms
  let busy = false;        // one request at a time: a double click cannot answer twice
  let lastAnswered = null; // comparison id that U would undo
  let mode = "pool";       // after an answer: fetch the next pool prompt, or wait for typed input

  const { api, say } = window.prefloop;

  function showProgress(p) {
    if (!p) return;
    $("mine").textContent = p.mine; $("total").textContent = p.total; $("pool").textContent = p.pool;
  }

  function show(c) {
    current = c; shownAt = performance.now();
    $("empty").hidden = true; $("comparison").hidden = false;
    $("input").textContent = c.prompt; // textContent: model output and inputs are never parsed as HTML
    // An admin saved a new task since this page loaded: the question and guidelines on it are out of date.
    const pageRevision = document.querySelector("[data-task-revision]").dataset.taskRevision;
    $("task-notice").hidden = c.task_revision == null || String(c.task_revision) === pageRevision;
    const cards = $("cards"); cards.replaceChildren();
    c.candidates.forEach((cand, i) => {
      const li = document.createElement("li");
      const btn = document.createElement("button");
      btn.type = "button"; btn.className = "card"; btn.dataset.candidateId = cand.id;
      const key = document.createElement("kbd"); key.textContent = String(i + 1);
      const text = document.createElement("span"); text.className = "text"; text.textContent = cand.text;
      btn.append(key, text);
      btn.addEventListener("click", () => pick(btn));
      // "Also fine": an acceptable candidate that is not the best is not trained as worse than the best.
      const fine = document.createElement("button");
      fine.type = "button"; fine.className = "also-good"; fine.setAttribute("aria-pressed", "false");
      fine.title = "Also acceptable: not trained as worse than the best (Shift+" + (i + 1) + ")";
      fine.textContent = "✓ also fine";
      fine.addEventListener("click", () => toggleFine(i));
      li.append(btn, fine); cards.append(li);
    });
    showProgress(c.progress);
  }

  function toggleFine(i) {
    const fine = $("cards").querySelectorAll("button.also-good")[i];
    if (fine) fine.setAttribute("aria-pressed", fine.getAttribute("aria-pressed") === "true" ? "false" : "true");
  }

  function pick(btn) {
    const chosen = Number(btn.dataset.candidateId);
    const alsoGood = [...$("cards").querySelectorAll("li")]
      .filter((li) => li.querySelector("button.also-good[aria-pressed=true]"))
      .map((li) => Number(li.querySelector("button.card").dataset.candidateId))
      .filter((id) => id !== chosen);
    answer({ candidate_id: chosen, also_good: alsoGood }, btn);
  }

  function clear() {
    current = null; $("comparison").hidden = true; $("empty").hidden = false;
  }

  async function next() {
    if (busy) return; busy = true; mode = "pool"; say("Generating…");
    try { show(await api("/api/comparisons", {})); say(""); }
    catch (e) { clear(); say(e.message, "error"); }
    finally { busy = false; }
  }

  async function own(text) {
    if (busy) return; busy = true; mode = "own"; say("Generating…");
    try { show(await api("/api/comparisons", { prompt: text })); say(""); $("own-text").value = ""; }
    catch (e) { say(e.message, "error"); }
    finally { busy = false; }
  }

  async function answer(body, btn) {
    if (busy || !current) return; busy = true;
    if (btn) btn.classList.add("picked");
    body.latency_ms = Math.round(performance.now() - shownAt);
    const id = current.id;
    try {
      const res = await api("/api/comparisons/" + id + "/answer", body);
      lastAnswered = id; $("undo").disabled = false;
      showProgress(res.progress);
      say("Saved.", "ok");
      busy = false;
      if (mode === "pool") await next(); else clear();
    } catch (e) {
      if (btn) btn.classList.remove("picked");
      say(e.message, "error"); busy = false;
    }
  }

  async function undo() {
    if (busy || lastAnswered === null) return; busy = true;
    try {
      const c = await api("/api/comparisons/" + lastAnswered + "/undo", {});
      lastAnswered = null; $("undo").disabled = true;
      show(c); say("Undone: answer it again.", "ok");
    } catch (e) { say(e.message, "error"); }
    finally { busy = false; }
  }

  $("next").addEventListener("click", next);
  $("undo").addEventListener("click", undo);
  $("own").addEventListener("submit", (ev) => { ev.preventDefault(); const t = $("own-text").value; if (t.trim()) own(t); });
  document.querySelectorAll("[data-verdict]").forEach((b) =>
    b.addEventListener("click", () => answer({ verdict: b.dataset.verdict })));

  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, textarea, select") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const k = ev.key.toLowerCase();
    const digit = /^Digit([1-9])$/.exec(ev.code || "");  // by code: Shift+1 is "!" as a key
    if (digit && ev.shiftKey && current) toggleFine(Number(digit[1]) - 1);
    else if (["1", "2", "3"].includes(k) && current) {
      const btn = $("cards").querySelectorAll("button.card")[Number(k) - 1];
      if (btn) pick(btn);
    } else if (k === "t" && current) answer({ verdict: "tie" });
    else if (k === "b" && current) answer({ verdict: "all_bad" });
    else if (k === "s" && current) answer({ verdict: "skip" });
    else if (k === "u") undo();
    else if (k === "n") next();
    else return;
    ev.preventDefault();
  });

  const pending = JSON.parse($("pending-data").textContent);
  if (pending) show(pending);
})();
