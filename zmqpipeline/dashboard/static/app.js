// The zmqpipeline dashboard: one EventSource carries a status snapshot about once a
// second; everything below draws it. No framework, no network but this server, relative
// URLs only (the page may sit under any prefix behind a reverse proxy).
"use strict";
(function () {
  const token = new URLSearchParams(location.search).get("token");
  const withToken = (path) => (token ? `${path}?token=${encodeURIComponent(token)}` : path);
  const $ = (id) => document.getElementById(id);
  const history = [[], []]; // seconds since the epoch, items/s of all tasks
  const MAX_POINTS = 86400; // a day at one point a second
  let chart = null;
  let previous = null; // {t, collected} of the last snapshot with a status
  let status = null; // the latest status seen (kept while disconnected)
  let connected = false;
  window.zmqpipelineDashboard = { history }; // for the console (and the tests)

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function duration(s) {
    if (s === null || s === undefined) return "-";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h} h ${m} min` : m ? `${m} min ${sec} s` : `${sec} s`;
  }

  const rate = (r) => (r === null || r === undefined ? "-" : r.toFixed(1));

  function setConnection(ok, text) {
    connected = ok;
    const conn = $("conn");
    conn.dataset.connected = String(ok);
    conn.textContent = text;
    steerButtons();
  }

  function steerButtons() {
    const st = status ? status.state : "";
    const off = !connected || !status || st === "finished";
    $("pause").disabled = off || status.paused || status.draining;
    $("resume").disabled = off || !status.paused;
    $("drain").disabled = off || status.draining;
    $("stop").disabled = off;
    $("retry-all").disabled = off || !status.failures.length;
  }

  function taskBlock(name, t) {
    const size = t.size;
    const waiting = size === null ? null : Math.max(0, size - t.collected - t.failed - t.in_flight);
    const whole = size === null ? Math.max(1, t.collected + t.failed + t.in_flight) : Math.max(1, size);
    const done = size === null ? null : (100 * (t.collected + t.failed)) / Math.max(1, size);
    const box = el("div", { class: "task", "data-task": name, "data-collected": t.collected });
    box.append(el("h3", {}, `${name}: ${t.state}` + (done === null ? "" : ` (${done.toFixed(1)} %)`)));
    const bar = el("div", { class: "bar", role: "img",
      "aria-label": `${name}: ${t.collected} collected, ${t.failed} failed, ${t.in_flight} in flight` });
    for (const [cls, n] of [["seg-collected", t.collected], ["seg-failed", t.failed], ["seg-flight", t.in_flight]]) {
      bar.append(el("span", { class: cls, style: `width:${(100 * n) / whole}%` }));
    }
    box.append(bar);
    const counts = [
      `collected ${t.collected}`, `failed ${t.failed}`, `in flight ${t.in_flight}`,
      waiting === null ? "size not known" : `waiting ${waiting} of ${size}`,
      `${rate(t.rate)} items/s`, `ETA ${t.eta_s === null ? "-" : duration(t.eta_s)}`,
    ];
    if (t.retries) counts.push(`retries ${t.retries}`);
    box.append(el("p", { class: "counts" }, counts.join(" \u00b7 ")));
    if (t.backlog !== undefined) {
      const fed = t.sources && t.sources.length ? `stage fed by ${t.sources.join(", ")}` : "stage";
      const open = t.open_ended ? ", open-ended (pushed items)" : "";
      box.append(el("p", { class: "counts stage" }, `${fed}${open}: backlog ${t.backlog}`));
    }
    return box;
  }

  function drawWorkers(workers) {
    const body = $("workers").tBodies[0];
    body.replaceChildren();
    const alive = workers.filter((w) => !w.lost).length;
    $("worker-count").textContent = `(${alive} alive, ${workers.length - alive} lost)`;
    for (const w of workers) {
      const row = el("tr", { "data-worker": w.id, class: w.lost ? "lost" : "alive" });
      const beat = w.heartbeat_age_s === null ? "-" : `${w.heartbeat_age_s.toFixed(1)} s ago`;
      for (const text of [w.lost ? `LOST (${w.lost})` : "alive", w.host || "-", w.pid ?? "-",
        w.task_type, w.done, `${(100 * w.share).toFixed(0)} %`, w.in_flight, beat]) {
        row.append(el("td", {}, String(text)));
      }
      body.append(row);
    }
  }

  const clock = (t) => (t === null || t === undefined ? "-" : new Date(t * 1000).toLocaleString());

  // Scheduled tasks' jobs (zmqpipeline.schedule): the status lists up to 100 per task,
  // running first, then the next due, then the others (latest status first).
  function drawJobs(schedule, now) {
    $("jobs-section").hidden = !schedule;
    if (!schedule) return;
    const body = $("jobs").tBodies[0];
    body.replaceChildren();
    let total = 0, shown = 0;
    for (const [task, s] of Object.entries(schedule)) {
      total += s.jobs;
      for (const j of s.list || []) {
        shown += 1;
        const row = el("tr", { "data-job": j.job, "data-task": task, "data-status": j.status });
        const next = j.next_run === null ? "-" :
          `${clock(j.next_run)} (${j.next_run > now ? "in " + duration(j.next_run - now) : "due"})`;
        const status = j.running_on ? `${j.status} on ${j.running_on}` : j.status;
        row.append(el("td", {}, j.job), el("td", {}, task), el("td", { class: "rule" }, j.rule));
        row.append(el("td", {}, next), el("td", { class: "status" }, status));
        row.append(el("td", {}, clock(j.status_at)), el("td", { class: "error" }, j.last_error || ""));
        body.append(row);
      }
    }
    $("job-count").textContent = shown < total ? `(${shown} of ${total})` : `(${total})`;
  }

  function drawFailures(failures) {
    const body = $("failures").tBodies[0];
    body.replaceChildren();
    $("no-failures").hidden = failures.length > 0;
    for (const f of failures) {
      const row = el("tr", { "data-item": f.item_id });
      row.append(el("td", {}, f.item_id), el("td", {}, String(f.attempts)));
      row.append(el("td", { class: "error" }, f.error));
      const cell = el("td");
      const button = el("button", { type: "button", "data-command": "retry_failed",
        "data-item": f.item_id }, "Retry");
      button.disabled = !connected;
      cell.append(button);
      row.append(cell);
      body.append(row);
    }
  }

  function drawChart(snap) {
    const s = snap.status;
    const t = snap.polled_at;
    const collected = s ? Object.values(s.tasks).reduce((a, x) => a + x.collected, 0) : null;
    let value = null;
    if (s && previous && t > previous.t && collected >= previous.collected) {
      value = (collected - previous.collected) / (t - previous.t);
    }
    previous = s ? { t, collected } : previous;
    history[0].push(t);
    history[1].push(value); // null: a gap while disconnected
    if (history[0].length > MAX_POINTS) { history[0].shift(); history[1].shift(); }
    if (typeof window.uPlot === "undefined") {
      const note = $("chart-note");
      note.hidden = false;
      note.textContent = "Chart unavailable: this copy of zmqpipeline has no chart library " +
        "(static/vendor/uPlot.iife.min.js; `python scripts/vendor_uplot.py` puts it there). " +
        `Now: ${value === null ? "-" : value.toFixed(1)} items/s.`;
      return;
    }
    const width = Math.max(200, $("chart").clientWidth);
    if (chart === null) {
      chart = new window.uPlot({ width, height: 220, scales: { x: { time: true } },
        series: [{}, { label: "items/s (all tasks)", stroke: "#1565c0", width: 2, spanGaps: false }],
        axes: [{}, { label: "items/s" }] }, history, $("chart"));
    } else {
      chart.setData(history);
    }
  }

  function draw(snap) {
    drawChart(snap);
    if (!snap.connected) {
      setConnection(false, `disconnected: ${snap.error} (asking again every second)`);
      return;
    }
    status = snap.status;
    const when = new Date(snap.polled_at * 1000).toLocaleTimeString();
    setConnection(true, `connected to ${snap.endpoint}, updated ${when}`);
    $("run").textContent = `run ${status.run.toString(16)}`;
    $("state").textContent = status.state + (status.ended_by ? ` (${status.ended_by})` : "");
    $("elapsed").textContent = duration(status.uptime_s);
    $("tasks").replaceChildren(...Object.entries(status.tasks).map(([n, t]) => taskBlock(n, t)));
    const lat = status.latency_ms || {};
    $("latency").textContent = lat.p50 === undefined ? "no item collected yet" :
      `p50 ${lat.p50.toFixed(1)} ms \u00b7 p90 ${lat.p90.toFixed(1)} ms \u00b7 ` +
      `p99 ${lat.p99.toFixed(1)} ms \u00b7 max ${lat.max.toFixed(1)} ms (latest items)`;
    drawWorkers(status.workers);
    drawJobs(status.schedule, snap.polled_at);
    drawFailures(status.failures);
    const c = status.collector;
    $("collector").textContent = `collector: ${c.connected ? "connected" : "NOT connected"}, ` +
      `last ACK ${c.last_ack_age_s === null ? "never" : c.last_ack_age_s.toFixed(1) + " s ago"}`;
    const dropped = Object.entries(status.dropped);
    $("dropped").textContent = dropped.length ?
      "dropped: " + dropped.map(([k, n]) => `${k} x${n}`).join(", ") : "dropped: none";
    steerButtons();
  }

  async function send(command, args) {
    const reply = $("reply");
    reply.textContent = `${command}...`;
    try {
      const r = await fetch(withToken("api/command"), { method: "POST",
        headers: { "Content-Type": "application/json", "X-Zmqpipeline-Dashboard": "1" },
        body: JSON.stringify({ command, args }) });
      const body = await r.json();
      const retried = (body.retried || []).map((x) => `${x.item_id} as ${x.new_item_id}`);
      reply.textContent = r.ok ? `${command}: the run is ${body.state}` +
        (retried.length ? `; again: ${retried.join(", ")}` : "") : `${command} refused: ${body.error}`;
    } catch (e) {
      reply.textContent = `${command}: no answer (${e})`;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-command]");
    if (!button || button.disabled) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    const item = button.dataset.item;
    send(button.dataset.command, item ? { ids: [item] } : {});
  });

  window.addEventListener("resize", () => {
    if (chart) chart.setSize({ width: Math.max(200, $("chart").clientWidth), height: 220 });
  });

  const events = new EventSource(withToken("events"));
  events.onmessage = (e) => draw(JSON.parse(e.data));
  events.onerror = () => setConnection(false, "disconnected: the dashboard server does not answer (retrying)");
})();
