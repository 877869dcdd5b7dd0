// The training run page: poll the run, move the progress bar, draw loss and reward-accuracy curves as SVG.
// Hand-written SVG rather than a chart library: two line charts are ~60 lines, and nothing is loaded from a CDN.
(function () {
  "use strict";
  const initial = JSON.parse(document.getElementById("run-data").textContent);
  const OPEN = ["queued", "running"];
  const SVG = "http://www.w3.org/2000/svg";
  const W = 420, H = 180, PAD = { l: 44, r: 10, t: 10, b: 26 };

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function draw(svg, points, fixed) {
    // points: [[x, y]]; fixed: [lo, hi] for the y axis, or null to fit the data.
    svg.replaceChildren();
    if (points.length === 0) {
      svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", fill: "#888" }, "no steps yet"));
      return;
    }
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
    let [y0, y1] = fixed || [Math.min(...ys), Math.max(...ys)];
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    const sx = (x) => PAD.l + ((x - x0) / (x1 - x0)) * (W - PAD.l - PAD.r);
    const sy = (y) => H - PAD.b - ((y - y0) / (y1 - y0)) * (H - PAD.t - PAD.b);
    for (const v of [y0, (y0 + y1) / 2, y1]) {
      svg.appendChild(el("line", { x1: PAD.l, x2: W - PAD.r, y1: sy(v), y2: sy(v), stroke: "#e3e6ec" }));
      svg.appendChild(el("text", { x: PAD.l - 4, y: sy(v) + 4, "text-anchor": "end", "font-size": 10, fill: "#666" },
        v.toFixed(2)));
    }
    svg.appendChild(el("text", { x: W - PAD.r, y: H - 6, "text-anchor": "end", "font-size": 10, fill: "#666" },
      "step " + x1));
    svg.appendChild(el("text", { x: PAD.l, y: H - 6, "font-size": 10, fill: "#666" }, "step " + x0));
    const d = points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
    svg.appendChild(el("path", { d: d, fill: "none", stroke: "#3563e9", "stroke-width": 2 }));
    const last = points[points.length - 1];
    svg.appendChild(el("circle", { cx: sx(last[0]), cy: sy(last[1]), r: 3, fill: "#3563e9" }));
  }

  function row(table, label, value) {
    const tr = table.insertRow();
    tr.insertCell().textContent = label;
    tr.insertCell().textContent = value;
  }

  function fmt(v) {
    if (v === null || v === undefined) return "—";
    return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : String(v);
  }

  function render(run) {
    const status = document.getElementById("run-status");
    status.textContent = run.status;
    status.className = "pill " + run.status;
    const p = run.progress || {};
    const history = p.history || [];
    const pct = p.total_steps ? Math.round((100 * (p.step || 0)) / p.total_steps) : (OPEN.includes(run.status) ? 0 : 100);
    document.getElementById("run-bar").style.width = pct + "%";
    const phase = p.phase ? p.phase + " · " : "";
    document.getElementById("run-step").textContent = run.status === "queued" ? "Waiting for a worker…" :
      phase + "step " + (p.step || 0) + (p.total_steps ? " of " + p.total_steps : "") +
      (p.loss !== undefined && p.loss !== null ? " · loss " + fmt(p.loss) : "");
    const error = document.getElementById("run-error");
    error.hidden = !run.error;
    error.textContent = run.error || "";
    const version = document.getElementById("run-version");
    if (run.version_id) {
      version.hidden = false;
      const m = run.metrics || {};
      version.textContent = "Version " + run.version_id + (run.status === "succeeded" ?
        (m.activated ? " passed the gate and is now serving." : " passed the gate but was not activated.") :
        " was rejected by the gate and is kept for inspection.");
    }
    draw(document.getElementById("chart-loss"), history.map((h) => [h.step, h.loss]), null);
    draw(document.getElementById("chart-acc"),
      history.filter((h) => h.reward_accuracy !== null && h.reward_accuracy !== undefined)
        .map((h) => [h.step, h.reward_accuracy]), [0, 1]);
    const m = run.metrics || {};
    if (Object.keys(m).length) {
      const table = document.getElementById("run-metrics");
      table.replaceChildren();
      const shown = [
        ["Held-out accuracy (new / parent)", fmt(m.accuracy_candidate) + " / " + fmt(m.accuracy_parent)],
        ["Held-out margin (new / parent)", fmt(m.margin_candidate) + " / " + fmt(m.margin_parent)],
        ["Fluency under base (new / parent)", fmt(m.fluency_candidate) + " / " + fmt(m.fluency_parent)],
        ["Expected distinct of " + (m.distinct_of || 3) + " (new / parent, ± SE" +
          (m.samples_per_prompt ? ", from " + m.samples_per_prompt + " samples per input" : "") + ")",
          withSe(m.distinct_candidate, m.distinct_se_candidate) + " / " + withSe(m.distinct_parent, m.distinct_se_parent)],
        ["Length in tokens (new / parent)", fmt(m.length_candidate) + " / " + fmt(m.length_parent)],
        ["Held-out accuracy of earlier versions (p that the new one is worse)", (m.ancestors || []).map((a) =>
          "v" + a.version_id + " " + (a.error ? "not read: " + a.error : fmt(a.accuracy) + " (p " + fmt(a.p_worse) + ")"))
          .join(", ") || "—"],
        ["Pairs (train / held out)", fmt(m.train_pairs) + " / " + fmt(m.heldout_pairs)],
        ["Loss (first / last)", fmt(m.loss_first) + " / " + fmt(m.loss_last)],
        ["Seconds (training / total)", fmt(m.seconds_training) + " / " + fmt(m.seconds_total)],
        ["Gate", m.passed ? "passed" : (m.reasons || []).join("; ") || "—"],
      ];
      for (const [label, value] of shown) row(table, label, value);
    }
  }

  function withSe(value, se) {
    return fmt(value) + (se !== undefined && se !== null ? " ± " + fmt(se) : "");
  }

  async function poll() {
    try {
      const res = await fetch("/api/training-runs/" + encodeURIComponent(initial.id),
        { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (res.ok) {
        const run = await res.json();
        render(run);
        if (!OPEN.includes(run.status)) return;
      }
    } catch (e) {
      // A dropped poll is retried; the run itself lives in the database.
    }
    setTimeout(poll, 1000);
  }

  render(initial);
  if (OPEN.includes(initial.status)) setTimeout(poll, 1000);
})();
