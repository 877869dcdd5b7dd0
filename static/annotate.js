// The annotation page: no framework, so nothing to vendor; every action calls the JSON API.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let current = null;      // the comparison on screen
  let shownAt = 0;         // when it appeared, for latency_ms
  let busy = false;        // one request at a time: a double click cannot answer twice
  let lastAnswered = null; // comparison id that U would undo
  let mode = "pool";       // after an answer: fetch the next pool prompt, or wait for typed input
  // A new comparison takes no answer key for this long after it appears: a quick double press answered the next
  // comparison, one the annotator never saw.
  const ARM_MS = 400;
  const maxChars = Number($("own-text").dataset.maxChars);

  const { api, patiently, say } = window.prefloop;

  function showProgress(p) {
    if (!p) return;
    $("mine").textContent = p.mine; $("mine-unit").textContent = p.mine === 1 ? "answer" : "answers";
    $("total").textContent = p.total; $("pool").textContent = p.pool; $("remaining").textContent = p.remaining;
  }

  // "Also fine" marks live in the page until the answer: kept per comparison in the tab, so a reload keeps them.
  const marksKey = (id) => "prefloop:also-fine:" + id;
  function saveMarks() {
    if (!current) return;
    const marked = [...$("cards").querySelectorAll("li")]
      .filter((li) => li.querySelector("button.also-good[aria-pressed=true]"))
      .map((li) => Number(li.querySelector("button.card").dataset.candidateId));
    try { sessionStorage.setItem(marksKey(current.id), JSON.stringify(marked)); } catch (e) { /* storage off */ }
  }
  function savedMarks(id) {
    try { return JSON.parse(sessionStorage.getItem(marksKey(id)) || "[]"); } catch (e) { return []; }
  }

  function show(c) {
    current = c; shownAt = performance.now();
    const marked = savedMarks(c.id);
    $("empty").hidden = true; $("comparison").hidden = false;
    $("input").textContent = c.prompt; // textContent: model output and inputs are never parsed as HTML
    // An admin saved a new task since this page loaded: the question and guidelines on it are out of date.
    const pageRevision = document.querySelector("[data-task-revision]").dataset.taskRevision;
    $("task-notice").hidden = c.task_revision == null || String(c.task_revision) === pageRevision;
    $("flag-form").hidden = true; flagging = null;
    const cards = $("cards"); cards.replaceChildren();
    cards.dataset.armed = "false";  // the answer keys wait ARM_MS (see keydown); the attribute shows when they work
    setTimeout(() => { if (current === c) cards.dataset.armed = "true"; }, ARM_MS);
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
      fine.type = "button"; fine.className = "also-good";
      fine.setAttribute("aria-pressed", marked.includes(cand.id) ? "true" : "false");
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
    saveMarks();
  }

  // Whether a comparison is on screen and waiting for an answer; if so, says what to do instead.
  function openComparison() {
    if (!current) return false;
    say("Answer the comparison on screen first, or press S to skip it.", "error");
    return true;
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
    if (busy || openComparison()) return; busy = true; mode = "pool"; say("Generating…");
    try { show(await patiently("/api/comparisons", {})); say(""); }
    catch (e) { clear(); say(e.message, "error"); }
    finally { busy = false; }
  }

  async function own(text) {
    if (!text.trim()) { say("Type an input first, or press N for the next prompt from the pool.", "error"); return; }
    if (text.length > maxChars) {
      say("This input is " + text.length + " characters; the limit is " + maxChars + ". Shorten it.", "error");
      return;
    }
    // A typed input waits for its answer; a pool comparison may wait (it stays yours, and N brings it back).
    if (busy || (mode === "own" && openComparison())) return;
    const parked = current !== null;
    busy = true; mode = "own"; say("Generating…");
    try {
      show(await api("/api/comparisons", { prompt: text })); $("own-text").value = "";
      say(parked ? "The pool comparison waits for you: N brings it back once this one is answered." : "", "ok");
      $("own-text").blur();  // the keys now answer the comparison, they do not type into the box
    } catch (e) { mode = parked ? "pool" : mode; say(e.message, "error"); }
    finally { busy = false; }
  }

  // Whether the answer was stored. Mouse clicks wait out ARM_MS too (a double click on a card), unless `armed`.
  async function answer(body, btn, armed) {
    if (busy || !current) return false;
    if (!armed && performance.now() - shownAt < ARM_MS) return false;
    busy = true;
    if (btn) btn.classList.add("picked");
    body.latency_ms = Math.round(performance.now() - shownAt);
    const id = current.id;
    try {
      const res = await api("/api/comparisons/" + id + "/answer", body);
      try { sessionStorage.removeItem(marksKey(id)); } catch (e) { /* storage off */ }
      lastAnswered = id; $("undo").disabled = false; current = null;
      showProgress(res.progress);
      say("Saved.", "ok");
      busy = false;
      if (mode === "pool") await next(); else clear();
      return true;
    } catch (e) {
      if (btn) btn.classList.remove("picked");
      say(e.message, "error"); busy = false;
      return false;
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

  let flagging = null;  // the comparison the open flag form is about: never another one that appeared since

  function openFlag() {
    if (!current) return;
    flagging = current.id;
    $("flag-form").hidden = false; $("flag-reason").focus();
  }

  async function sendFlag() {
    if (busy || !current || current.id !== flagging) { $("flag-form").hidden = true; return; }
    busy = true;
    try {
      await api("/api/comparisons/" + flagging + "/flag", { reason: $("flag-reason").value,
                                                            comment: $("flag-comment").value || null });
      $("flag-form").hidden = true; $("flag-comment").value = ""; busy = false;
      if (await answer({ verdict: "skip" }, null, true)) say("Flagged for an admin, and skipped.", "ok");
    } catch (e) { say(e.message, "error"); busy = false; }
  }

  $("flag").addEventListener("click", openFlag);
  $("flag-form").addEventListener("submit", (ev) => { ev.preventDefault(); sendFlag(); });
  $("flag-form").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") { $("flag-form").hidden = true; ev.target.blur(); ev.preventDefault(); }
  });
  $("next").addEventListener("click", next);
  $("undo").addEventListener("click", undo);
  $("own").addEventListener("submit", (ev) => { ev.preventDefault(); own($("own-text").value); });
  $("own-text").addEventListener("keydown", (ev) => { if (ev.key === "Escape") { ev.target.blur(); ev.preventDefault(); } });
  document.querySelectorAll("[data-verdict]").forEach((b) =>
    b.addEventListener("click", () => answer({ verdict: b.dataset.verdict })));

  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, textarea, select") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const k = ev.key.toLowerCase();
    const digit = /^Digit([1-9])$/.exec(ev.code || "");  // by code: Shift+1 is "!" as a key
    const answerKey = ["1", "2", "3", "t", "b", "s"].includes(k) && !ev.shiftKey;
    if (answerKey && current && performance.now() - shownAt < ARM_MS) { ev.preventDefault(); return; }
    if (digit && ev.shiftKey && current) toggleFine(Number(digit[1]) - 1);
    else if (["1", "2", "3"].includes(k) && current) {
      const btn = $("cards").querySelectorAll("button.card")[Number(k) - 1];
      if (btn) pick(btn);
    } else if (k === "t" && current) answer({ verdict: "tie" });
    else if (k === "b" && current) answer({ verdict: "all_bad" });
    else if (k === "s" && current) answer({ verdict: "skip" });
    else if (k === "f" && current) openFlag();
    else if (k === "u") undo();
    else if (k === "n") next();
    else return;
    ev.preventDefault();
  });

  const pending = JSON.parse($("pending-data").textContent);
  if (pending) show(pending);
  // Back or Forward restoring this page from the browser's memory: ask the server again, never act on a stale page.
  window.addEventListener("pageshow", (ev) => { if (ev.persisted) window.location.reload(); });
})();
