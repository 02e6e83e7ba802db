// The dashboard's timeline: one row per deployment, its status walk as coloured segments over
// time. Loaded before app.js, whose helpers and state (el, svg, view, select, STATUS_COLORS…)
// these functions use when they run. Every value goes in as text, never as markup.
"use strict";

function niceStep(span, wanted) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200];
  return steps.find((step) => span / step <= wanted) || 86400;
}

function drawTimeline() {
  const container = document.getElementById("timeline");
  const deployments = view.deployments;
  document.getElementById("deployment-count").textContent = deployments.length
    ? `${deployments.filter((d) => d.current_status !== "Status.TERMINATED").length} running, ${deployments.length} in all`
    : "";
  if (!deployments.length) {
    container.replaceChildren(el("p", { class: "muted empty" },
      "No deployment yet: ", el("code", {}, "POST /deployments"), " to make one."));
    return;
  }
  const width = Math.max(container.clientWidth, 600);
  const labelWidth = 230;
  const statusWidth = 110;
  const rowHeight = 34;
  const axisHeight = 22;
  const chartLeft = labelWidth;
  const chartRight = width - statusWidth - 8;
  const start = Math.min(...deployments.map((d) => d.statuses[0].at));
  const end = Math.max(view.now, start + 10);
  const x = (t) => chartLeft + ((t - start) / (end - start)) * (chartRight - chartLeft);
  const height = axisHeight + rowHeight * deployments.length + 4;
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "deployment status timeline" });

  const axis = svg("g", { class: "axis" });
  const step = niceStep(end - start, Math.max(3, Math.floor((chartRight - chartLeft) / 90)));
  for (let tick = Math.ceil(start / step) * step; tick <= end; tick += step) {
    axis.append(svg("line", { x1: x(tick), x2: x(tick), y1: axisHeight - 4, y2: height }));
    axis.append(svg("text", { x: x(tick), y: 12, "text-anchor": "middle" }, clock(tick)));
  }
  chart.append(axis);

  deployments.forEach((deployment, index) => {
    const top = axisHeight + index * rowHeight;
    const row = svg("g", {
      class: `row${deployment.request_id === view.selected ? " selected" : ""}`,
      "data-request-id": deployment.request_id,
      "data-status": deployment.current_status,
    });
    row.append(svg("rect", { class: "row-bg", x: 0, y: top, width, height: rowHeight, fill: "transparent" }));
    row.append(svg("text", { class: "label-id", x: 8, y: top + 14 }, deployment.request_id));
    row.append(svg("text", { class: "label-sub", x: 8, y: top + 28 },
      `${deployment.app_name} · ${deployment.backed ? "backed" : "simulated"}`));
    const statuses = deployment.statuses;
    statuses.forEach((entry, i) => {
      const from = entry.at;
      const terminated = entry.status === "Status.TERMINATED";
      const to = i + 1 < statuses.length ? statuses[i + 1].at : view.now;
      const left = x(from);
      const right = terminated ? left + 4 : Math.max(x(to), left + 2);
      const segment = svg("rect", {
        x: left, y: top + 8, width: right - left, height: rowHeight - 16, rx: 2,
        fill: STATUS_COLORS[entry.status] || "#6b7280",
        "data-status": entry.status,
      });
      const took = terminated ? "" : ` for ${seconds(to - from)}`;
      segment.append(svg("title", {}, `${shortStatus(entry.status)} at ${clock(from)}${took}`));
      row.append(segment);
    });
    const badge = svg("text", { x: width - statusWidth, y: top + 21, class: "label-sub",
      "font-weight": 600, fill: STATUS_COLORS[deployment.current_status] || "#6b7280" },
    shortStatus(deployment.current_status));
    if (deployment.current_status === "Status.TERMINATED") badge.setAttribute("fill", "#6b7280");
    row.append(badge);
    row.addEventListener("click", () => select(deployment.request_id, true));
    chart.append(row);
  });
  chart.append(svg("line", { class: "now", x1: x(view.now), x2: x(view.now), y1: axisHeight - 4, y2: height }));
  container.replaceChildren(chart);
}

function drawLegend() {
  const legend = document.getElementById("legend");
  for (const [status, color] of Object.entries(STATUS_COLORS)) {
    legend.append(el("span", {}, el("i", { style: { background: color } }), shortStatus(status)));
  }
}
