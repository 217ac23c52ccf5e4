/* The operations dashboard: draws the snapshot the page carries, then polls
 * /ops/snapshot.json every few seconds and redraws in place (no page reload).
 * Every value is put in the page as text (textContent), never as HTML: tenant
 * names and error messages are other people's words. */
"use strict";

(function () {
  const root = document.getElementById("ops");
  if (!root) {
    return;
  }
  const snapshotUrl = root.dataset.snapshotUrl;
  const pollMs = Math.max(Number(root.dataset.pollSeconds) || 5, 1) * 1000;
  const taskUrl = root.dataset.taskUrl;
  const PALETTE = ["#417690", "#e07a1f", "#2a9d8f", "#9b5de5", "#d62828", "#6a994e", "#f4a261", "#264653"];
  const charts = {};

  // --- Formatting ---------------------------------------------------------------------------

  function seconds(value) {
    if (value === null || value === undefined) {
      return "–";
    }
    if (value < 1) {
      return `${Math.round(value * 1000)} ms`;
    }
    if (value < 120) {
      return `${value.toFixed(1)} s`;
    }
    if (value < 7200) {
      return `${(value / 60).toFixed(1)} min`;
    }
    return `${(value / 3600).toFixed(1)} h`;
  }

  function rate(value) {
    return value === 0 ? "0" : value < 10 ? value.toPrecision(2) : value.toFixed(1);
  }

  function gib(bytes) {
    return bytes === null || bytes === undefined ? "?" : `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  }

  function percent(fraction) {
    return fraction === null || fraction === undefined ? "" : ` (${Math.round(fraction * 100)}%)`;
  }

  function clock(iso) {
    return iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }) : "";
  }

  function minuteLabel(iso) {
    return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  // --- Building the page (text only) --------------------------------------------------------

  function cell(content, className) {
    const td = document.createElement("td");
    if (content instanceof Node) {
      td.appendChild(content);
    } else {
      td.textContent = content === null || content === undefined ? "" : String(content);
    }
    if (className) {
      td.className = className;
    }
    return td;
  }

  function flag(text, kind) {
    const span = document.createElement("span");
    span.className = kind ? `ops-flag ops-flag-${kind}` : "ops-flag";
    span.textContent = text;
    return span;
  }

  function withFlags(text, flags) {
    const span = document.createElement("span");
    span.appendChild(document.createTextNode(text));
    flags.forEach((item) => span.appendChild(item));
    return span;
  }

  function fillTable(id, rows, makeRow) {
    const table = document.getElementById(id);
    const body = table.querySelector("tbody");
    body.replaceChildren(...rows.map(makeRow));
    table.hidden = rows.length === 0;
  }

  function row(cells, className, key) {
    const tr = document.createElement("tr");
    cells.forEach((td) => tr.appendChild(td));
    if (className) {
      tr.className = className;
    }
    if (key) {
      tr.dataset.key = key;
    }
    return tr;
  }

  function showEmpty(condition, empty) {
    root.querySelectorAll(`[data-empty-when="${condition}"]`).forEach((node) => {
      node.hidden = !empty;
    });
  }

  // --- Charts -------------------------------------------------------------------------------

  function colour(i) {
    return PALETTE[i % PALETTE.length];
  }

  /* Draw (or redraw in place) chart ``id``; with no data, its empty-state text instead. */
  function draw(id, type, labels, datasets, options) {
    const hasData = labels.length > 0 && datasets.some((set) => set.data.some((value) => value > 0));
    const canvas = document.getElementById(id);
    canvas.parentElement.hidden = !hasData;
    const empty = root.querySelector(`[data-chart-empty="${id}"]`);
    if (empty) {
      empty.hidden = hasData;
    }
    if (typeof Chart === "undefined") {
      return; // the library failed to load: the tables still show everything
    }
    let chart = charts[id];
    if (!chart) {
      chart = new Chart(canvas, {
        type,
        data: { labels, datasets },
        options: Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, options || {}),
      });
      charts[id] = chart;
    } else {
      chart.data.labels = labels;
      chart.data.datasets = datasets;
      chart.update("none");
    }
  }

  const stackedBars = { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } };
  const fromZero = { scales: { y: { beginAtZero: true } } };

  // --- Sections -----------------------------------------------------------------------------

  function renderModels(snapshot) {
    const models = snapshot.models;
    showEmpty("no-models", models.length === 0);
    showEmpty("no-tasks", models.length > 0 && !snapshot.has_tasks);
    const names = models.map((m) => m.name);
    draw("chart-queue", "bar", names, [
      { label: "queued", data: models.map((m) => m.queued), backgroundColor: colour(1) },
      { label: "running", data: models.map((m) => m.running), backgroundColor: colour(0) },
    ], stackedBars);

    const minutes = snapshot.throughput.minutes.map(minuteLabel);
    const series = snapshot.throughput.series;
    const line = (s, i, values) => ({
      label: s.model, data: values, borderColor: colour(i), backgroundColor: colour(i), pointRadius: 0, tension: 0,
    });
    draw("chart-throughput", "line", minutes, series.map((s, i) => line(s, i, s.tasks)),
      { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } });
    draw("chart-tokens", "line", minutes, series.map((s, i) => line(s, i, s.tokens_per_second)), fromZero);

    const timed = models.filter((m) => m.ttft_p50_seconds !== null);
    draw("chart-ttft", "bar", timed.map((m) => m.name), [
      { label: "p50 (s)", data: timed.map((m) => m.ttft_p50_seconds), backgroundColor: colour(2) },
      { label: "p99 (s)", data: timed.map((m) => m.ttft_p99_seconds), backgroundColor: colour(4) },
    ], fromZero);

    fillTable("table-models", models, (m) => row([
      cell(m.enabled ? m.name : withFlags(m.name, [flag("disabled", "quiet")])),
      cell(m.queued), cell(m.running), cell(seconds(m.oldest_wait_seconds)),
      cell(m.finished_last_hour), cell(m.failed_last_hour), cell(rate(m.tokens_per_second)),
      cell(seconds(m.ttft_p50_seconds)), cell(seconds(m.ttft_p99_seconds)),
    ], "", m.name));
  }

  function renderWorkers(snapshot) {
    const workers = snapshot.workers;
    showEmpty("no-workers", workers.length === 0);
    draw("chart-slots", "bar", workers.map((w) => w.name), [
      { label: "busy", data: workers.map((w) => w.busy), backgroundColor: colour(0) },
      { label: "free", data: workers.map((w) => Math.max(w.slots - w.busy, 0)), backgroundColor: "#c9d6df" },
    ], stackedBars);

    const gpus = workers.flatMap((w) => w.gpus.map((g) => ({ worker: w.name, gpu: g })));
    draw("chart-gpus", "bar", gpus.map((x) => `${x.worker} #${x.gpu.index ?? "?"}`), [
      {
        label: "memory used %",
        data: gpus.map((x) => (x.gpu.memory_total ? (100 * (x.gpu.memory_used || 0)) / x.gpu.memory_total : 0)),
        backgroundColor: colour(3),
      },
      { label: "utilisation %", data: gpus.map((x) => x.gpu.utilization || 0), backgroundColor: colour(6) },
    ], { scales: { y: { beginAtZero: true, max: 100 } } });

    fillTable("table-workers", workers, (w) => row([
      cell(w.name), cell(w.host),
      cell(w.lost ? withFlags("", [flag("lost")]) : w.status),
      cell(`${w.busy} / ${w.slots}`),
      cell(w.models.join(", ") || "–"),
      cell(w.gpus.length ? w.gpus.map((g) => {
        const util = g.utilization === null ? "" : `, ${Math.round(g.utilization)}%`;
        return `${g.name || "GPU"} #${g.index ?? "?"}: ${gib(g.memory_used)} of ${gib(g.memory_total)}${util}`;
      }).join("; ") : "–"),
      cell(`${seconds(w.heartbeat_age_seconds)} ago`),
    ], w.lost ? "ops-lost" : "", w.name));
  }

  function renderTenants(snapshot) {
    const tenants = snapshot.tenants;
    showEmpty("no-tenants", tenants.length === 0);
    const limited = tenants.filter((t) => t.highest_fraction !== null);
    draw("chart-tenants", "bar", limited.map((t) => t.slug), [{
      label: "% of its nearest limit",
      data: limited.map((t) => Math.round(t.highest_fraction * 1000) / 10),
      backgroundColor: limited.map((t) => (t.near_limit ? "#d62828" : colour(0))),
    }], { indexAxis: "y", scales: { x: { beginAtZero: true, suggestedMax: 100 } }, plugins: { legend: { display: false } } });

    const use = (t, name) => {
      const limit = t.limits.find((l) => l.name === name);
      if (!limit) {
        return cell("");
      }
      const text = limit.limit === null ? `${limit.used} (no limit)` : `${limit.used} / ${limit.limit}${percent(limit.fraction)}`;
      return cell(text, limit.fraction !== null && limit.fraction >= snapshot.near_limit ? "ops-over" : "");
    };
    fillTable("table-tenants", tenants, (t) => {
      const flags = [];
      if (t.near_limit) {
        flags.push(flag("near limit", "warn"));
      }
      if (t.paused) {
        flags.push(flag("paused"));
      }
      return row([
        cell(withFlags(t.slug, flags)), cell(t.plan), use(t, "budget"), use(t, "queued"), use(t, "running"),
        use(t, "requests/min"), use(t, "tokens/min"),
      ], t.near_limit ? "ops-near" : "", t.slug);
    });
    const note = document.getElementById("tenants-note");
    note.textContent = tenants.length < snapshot.tenants_total
      ? `${tenants.length} of ${snapshot.tenants_total} tenants shown: those with usage this period, work pending or a paused account.`
      : "";
  }

  function renderFailures(snapshot) {
    const failures = snapshot.failures;
    showEmpty("no-failures", failures.length === 0);
    fillTable("table-failures", failures, (f) => {
      const link = document.createElement("a");
      link.href = taskUrl.replace("00000000-0000-0000-0000-000000000000", encodeURIComponent(f.task_id));
      link.textContent = f.task_id.slice(0, 8);
      return row([
        cell(f.finished_at ? new Date(f.finished_at).toLocaleString() : ""), cell(f.tenant), cell(f.model),
        cell(f.error_code), cell(f.error_message, "ops-message"), cell(link),
      ], "", f.task_id);
    });
  }

  function render(snapshot) {
    renderModels(snapshot);
    renderWorkers(snapshot);
    renderTenants(snapshot);
    renderFailures(snapshot);
    const updated = document.getElementById("ops-updated");
    updated.dateTime = snapshot.generated_at;
    updated.textContent = clock(snapshot.generated_at);
    root.dataset.generatedAt = snapshot.generated_at;
    root.dataset.updates = String(Number(root.dataset.updates) + 1);
  }

  // --- Polling ------------------------------------------------------------------------------

  function problem(text) {
    const node = document.getElementById("ops-problem");
    node.textContent = text || "";
    node.hidden = !text;
  }

  async function poll() {
    if (!document.hidden) {
      try {
        const response = await fetch(snapshotUrl, {
          credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" },
        });
        if (response.status === 403) {
          problem("Your session has ended: sign in to the admin again to resume.");
        } else if (!response.ok) {
          problem(`The last update failed (HTTP ${response.status}); retrying.`);
        } else {
          render(await response.json());
          problem("");
        }
      } catch (error) {
        problem("The server cannot be reached; retrying.");
      }
    }
    window.setTimeout(poll, pollMs);
  }

  render(JSON.parse(document.getElementById("ops-snapshot").textContent));
  window.setTimeout(poll, pollMs);
}());
