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
    if (!res.ok) throw new Error(data.error || ("request failed: " + res.status));
    return data;
  }

  function say(text, kind) {
    const status = document.getElementById("status");
    status.textContent = text || "";
    status.className = "status " + (kind || "");
  }

  window.prefloop = { api, say };
})();
