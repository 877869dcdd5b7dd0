// What the annotation and arena pages share: a POST to the JSON API with the page's CSRF token, and the status line.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  async function api(path, body, method) {
    const res = await fetch(path, {
      method: method || "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: method === "GET" ? undefined : JSON.stringify(body || {}),
      credentials: "same-origin",
    });
    let data = {};
    try { data = await res.json(); } catch (e) { /* non-JSON error page */ }
    if (!res.ok) {
      const err = new Error(data.error || ("request failed: " + res.status));
      // A busy model (503) or a spent rate (429) says when to ask again.
      const after = Number(res.headers.get("Retry-After"));
      err.status = res.status;
      if ((res.status === 503 || res.status === 429) && after > 0) err.retryAfter = after;
      throw err;
    }
    return data;
  }

  // api(), asked again after each Retry-After while the page counts down (the waiting state); other errors throw.
  async function patiently(path, body) {
    for (;;) {
      try { return await api(path, body); }
      catch (e) {
        if (!e.retryAfter) throw e;
        for (let left = Math.ceil(e.retryAfter); left > 0; left--) {
          say((e.status === 503 ? "The model is busy with other annotators' requests."
            : "You are ahead of the limit on new comparisons.") + " Asking again in " + left + " s…", "waiting");
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
        say("Generating…");
      }
    }
  }

  function say(text, kind) {
    const status = document.getElementById("status");
    status.textContent = text || "";
    status.className = "status " + (kind || "");
  }

  window.prefloop = { api, patiently, say };
})();
