// The arena page: one battle at a time, voted with a click or a key; every action calls the JSON API.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let current = null;  // the battle on screen
  let shownAt = 0;     // when it appeared, for latency_ms
  let busy = false;    // one request at a time: a double click cannot vote twice

  const { api, patiently, say } = window.prefloop;

  function show(b) {
    current = b; shownAt = performance.now();
    $("empty").hidden = true; $("battle").hidden = false;
    $("input").textContent = b.prompt; // textContent: model output and inputs are never parsed as HTML
    const sides = $("sides"); sides.replaceChildren();
    b.candidates.forEach((cand, i) => {
      const btn = document.createElement("button");
      btn.type = "button"; btn.className = "card side"; btn.dataset.candidateId = cand.id;
      btn.dataset.side = i === 0 ? "left" : "right";
      const key = document.createElement("kbd"); key.textContent = i === 0 ? "← A" : "→ D";
      const text = document.createElement("span"); text.className = "text"; text.textContent = cand.text;
      btn.append(key, text);
      btn.addEventListener("click", () => vote({ candidate_id: cand.id }));
      sides.append(btn);
    });
    // Two versions can write the very same text; say so, or the annotator hunts for a difference that is not there.
    if (b.candidates.length === 2 && b.candidates[0].text === b.candidates[1].text) {
      say("Both versions wrote the same text: press T for a tie.", "ok");
    }
  }

  async function fetchBattle(body) {
    if (busy) return; busy = true; say("Generating…");
    try {
      const battle = await patiently("/api/arena/battles", body);  // a busy model: wait, then ask again
      say(""); show(battle);  // show may say something of its own
      if (body.prompt) $("own-text").value = "";
    }
    catch (e) { say(e.message, "error"); }
    finally { busy = false; }
  }

  async function vote(body) {
    if (busy || !current) return; busy = true;
    const payload = Object.assign({ latency_ms: Math.round(performance.now() - shownAt) }, body);
    try {
      await api("/api/arena/battles/" + current.id + "/vote", payload);
      $("votes").textContent = String(Number($("votes").textContent) + 1);
      current = null; $("battle").hidden = true; say("Vote saved.", "ok");
    } catch (e) { say(e.message, "error"); busy = false; return; }
    busy = false;
    fetchBattle({});
  }

  $("next").addEventListener("click", () => fetchBattle({}));
  $("own").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = $("own-text").value.trim();
    if (text) fetchBattle({ prompt: text });
  });
  document.querySelectorAll("[data-verdict]").forEach((btn) =>
    btn.addEventListener("click", () => vote({ verdict: btn.dataset.verdict })));
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const key = ev.key.toLowerCase();
    const side = (i) => current && current.candidates[i] && vote({ candidate_id: current.candidates[i].id });
    if (key === "arrowleft" || key === "a") side(0);
    else if (key === "arrowright" || key === "d") side(1);
    else if (key === "t") vote({ verdict: "tie" });
    else if (key === "b") vote({ verdict: "both_bad" });
    else if (key === "n") fetchBattle({});
    else return;
    ev.preventDefault();
  });
  const pending = JSON.parse($("pending-data").textContent);
  if (pending) show(pending);
})();
