// My answers: search, page, and change an answer in place (PUT). Text is always set as text, never parsed as HTML.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const { api, say } = window.prefloop;
  const PAGE = 20;
  let offset = 0;

  function row(a) {
    const li = document.createElement("li");
    li.className = "answer"; li.dataset.comparisonId = a.comparison_id;
    const input = document.createElement("blockquote"); input.className = "input"; input.textContent = a.prompt;
    const list = document.createElement("div"); list.className = "choices";
    a.candidates.forEach((c) => {
      const btn = document.createElement("button");
      btn.type = "button"; btn.className = "card small"; btn.dataset.candidateId = c.id; btn.textContent = c.text;
      if (a.verdict === "choice" && c.id === a.candidate_id) btn.classList.add("picked");
      if (a.also_good.includes(c.id)) btn.classList.add("also");
      // The "also fine" marks stay as they were (less the new pick); clicking the pick again changes nothing.
      btn.addEventListener("click", () => change(li, { candidate_id: c.id,
                                                      also_good: a.also_good.filter((id) => id !== c.id) }));
      list.append(btn);
    });
    const verdicts = document.createElement("div"); verdicts.className = "verdicts";
    [["tie", "Tie"], ["all_bad", "All bad"], ["skip", "Skip"]].forEach(([v, label]) => {
      const b = document.createElement("button");
      b.type = "button"; b.textContent = label; b.dataset.verdict = v;
      if (a.verdict === v) b.classList.add("picked");
      b.addEventListener("click", () => change(li, { verdict: v }));
      verdicts.append(b);
    });
    const when = document.createElement("p"); when.className = "hint";
    when.textContent = "answered " + a.answered_at.slice(0, 16).replace("T", " ") + " UTC";
    li.append(input, list, verdicts, when);
    return li;
  }

  async function load(reset) {
    if (reset) { offset = 0; $("answers").replaceChildren(); }
    const q = encodeURIComponent($("q").value.trim());
    try {
      const data = await api(`/api/my/answers?q=${q}&limit=${PAGE}&offset=${offset}`, null, "GET");
      data.answers.forEach((a) => $("answers").append(row(a)));
      offset += data.answers.length;
      $("count").textContent = data.total + (data.total === 1 ? " answer" : " answers");
      $("more").hidden = offset >= data.total;
      say(data.total ? "" : "No answers match.");
    } catch (e) { say(e.message, "error"); }
  }

  async function change(li, body) {
    try {
      const res = await api(`/api/comparisons/${li.dataset.comparisonId}/answer`, body, "PUT");
      li.querySelectorAll(".picked").forEach((b) => b.classList.remove("picked"));
      li.querySelectorAll(".also").forEach((b) => b.classList.remove("also"));
      const picked = body.candidate_id ? li.querySelector(`[data-candidate-id="${body.candidate_id}"]`)
        : li.querySelector(`[data-verdict="${body.verdict}"]`);
      picked.classList.add("picked");
      (body.also_good || []).forEach((id) => li.querySelector(`[data-candidate-id="${id}"]`).classList.add("also"));
      const words = { replaced: "Changed.", superseded: "Changed: a new answer for the next run (a run had read the old one).",
                      unchanged: "That was already your answer." };
      say(words[res.mode], "ok");
    } catch (e) { say(e.message, "error"); }
  }

  $("search").addEventListener("submit", (ev) => { ev.preventDefault(); load(true); });
  $("more").addEventListener("click", () => load(false));
  load(true);
})();
