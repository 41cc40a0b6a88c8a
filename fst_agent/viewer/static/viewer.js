// fst-agent view: draws the run curves (a small SVG plotter, no library), follows runs still being written,
// and submits the step filters as they change. Served by the viewer itself; it talks to nothing else.
"use strict";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#7f7f7f", "#bcbd22"];
const DASHES = ["", "6 3", "2 3", "8 3 2 3", "1 2"];
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function niceTicks(lo, hi, count) {
  const span = hi - lo;
  const raw = span / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map(f => f * mag).find(s => span / s <= count) || 10 * mag;
  const ticks = [];
  // multiples of the step (never a running sum: 0.1 + 0.2 leaves 5.6e-17 where 0 belongs)
  for (let i = Math.floor(lo / step); i * step <= hi + step * 1e-9; i++) ticks.push(+(i * step).toPrecision(12));
  return ticks;
}

function fmt(v) {
  if (v === null || v === undefined) return "-";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(+v.toPrecision(4));
}

function extent(values) {
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}

// lines: [{run, label, color, dash, points: [[step, value], ...]}]
function drawChart(box, lines, ylabel) {
  box.textContent = "";
  lines = lines.filter(l => l.points.length);
  if (!lines.length) {
    const p = document.createElement("p");
    p.className = "dim";
    p.textContent = box.closest("#chart-any") ? "choose a metric above" : "no data yet";
    box.appendChild(p);
    return;
  }
  const W = 460, H = 250, m = {l: 54, r: 12, t: 10, b: 34};
  let [x0, x1] = extent(lines.flatMap(l => l.points.map(p => p[0])));
  let [y0, y1] = extent(lines.flatMap(l => l.points.map(p => p[1])));
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { const d = Math.abs(y0) * 0.1 || 1; y0 -= d; y1 += d; }
  const yt = niceTicks(y0, y1, 5);
  y0 = Math.min(y0, yt[0]); y1 = Math.max(y1, yt[yt.length - 1]);
  const xt = niceTicks(x0, x1, 6).filter(v => Number.isInteger(v) && v >= x0 && v <= x1);
  const sx = v => m.l + (v - x0) / (x1 - x0) * (W - m.l - m.r);
  const sy = v => H - m.b - (v - y0) / (y1 - y0) * (H - m.t - m.b);
  const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, class: "plot-svg", role: "img"}, box);
  const axes = el("g", {class: "axes"}, svg);
  for (const t of yt) {
    el("line", {x1: m.l, x2: W - m.r, y1: sy(t), y2: sy(t), class: "grid"}, axes);
    el("text", {x: m.l - 6, y: sy(t) + 4, "text-anchor": "end", class: "tick"}, axes).textContent = fmt(t);
  }
  for (const t of xt) {
    el("text", {x: sx(t), y: H - m.b + 16, "text-anchor": "middle", class: "tick"}, axes).textContent = String(t);
  }
  el("text", {x: (m.l + W - m.r) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label"}, axes).textContent = "step";
  const yl = el("text", {x: 12, y: (m.t + H - m.b) / 2, "text-anchor": "middle", class: "axis-label",
                         transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})`}, axes);
  yl.textContent = ylabel || "";
  for (const line of lines) {
    const d = line.points.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("");
    el("path", {d, fill: "none", stroke: line.color, "stroke-width": 1.8, "stroke-dasharray": line.dash,
                class: "line", "data-run": line.run, "data-key": line.key}, svg);
    if (line.points.length <= 300) {
      for (const [x, y] of line.points) {
        const c = el("circle", {cx: sx(x), cy: sy(y), r: 3, fill: line.color, class: "point", "data-step": x}, svg);
        el("title", {}, c).textContent = `${line.run} · ${line.label} · step ${x}: ${fmt(y)}`;
        c.addEventListener("click", () => { window.location.href = `/run/${encodeURIComponent(line.run)}/step/${x}`; });
      }
    }
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const line of lines) {
    const item = document.createElement("span");
    const sw = document.createElementNS(SVG, "svg");
    sw.setAttribute("width", "22"); sw.setAttribute("height", "8");
    el("line", {x1: 0, x2: 22, y1: 4, y2: 4, stroke: line.color, "stroke-width": 2, "stroke-dasharray": line.dash}, sw);
    item.appendChild(sw);
    item.appendChild(document.createTextNode(" " + (line.multi ? `${line.run}: ` : "") + line.label));
    legend.appendChild(item);
  }
  box.appendChild(legend);
}

function linesFor(spec, runs, series, sandbox, picked) {
  const multi = runs.length > 1;
  const lines = [];
  runs.forEach((run, ri) => {
    let items = [];  // [label, key, points]
    if (spec.source === "metrics" || spec.source === "picked") {
      const s = (series[run] || {});
      let keys = spec.source === "picked" ? (picked ? [[picked, picked]] : []) : spec.keys;
      if (spec.prefix) keys = Object.keys(s).filter(k => k.startsWith(spec.prefix)).sort().map(k => [k, k.slice(spec.prefix.length)]);
      items = keys.map(([key, label]) => [label, key, s[key] || []]);
    } else if (spec.source === "sandbox_counts") {
      const steps = (sandbox[run] || []).filter(st => st.step !== null);
      const statuses = [...new Set(steps.flatMap(st => Object.keys(st.counts)))].sort();
      items = statuses.map(name => [name, name, steps.map(st => [st.step, st.counts[name] || 0])]);
    } else if (spec.source === "sandbox_latency") {
      const steps = (sandbox[run] || []).filter(st => st.step !== null);
      items = spec.keys.map(([key, label]) => [label, key,
        steps.filter(st => st[`${key}_wall`] !== null).map(st => [st.step, st[`${key}_wall`]])]);
    }
    items.forEach(([label, key, points], ki) => {
      lines.push({run, key, label, points, multi,
                  color: PALETTE[(multi ? ri : ki) % PALETTE.length], dash: multi ? DASHES[ki % DASHES.length] : ""});
    });
  });
  return lines;
}

async function getJSON(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function runQuery(runs) {
  return runs.map(r => "run=" + encodeURIComponent(r)).join("&");
}

async function drawCharts(section) {
  const runs = JSON.parse(section.dataset.runs);
  const q = runQuery(runs);
  const figures = [...section.querySelectorAll("figure.chart")];
  const needSandbox = figures.some(f => JSON.parse(f.dataset.chart).source.startsWith("sandbox"));
  const seriesData = await getJSON(`/api/series?${q}`);
  const series = Object.fromEntries(seriesData.runs.map(r => [r.name, r.series]));
  const picker = document.getElementById("metric-picker");
  if (picker) {
    const keys = [...new Set(seriesData.runs.flatMap(r => Object.keys(r.series)))].sort();
    const current = picker.value;
    picker.textContent = "";
    for (const k of ["", ...keys]) {
      const o = document.createElement("option");
      o.value = k; o.textContent = k || "choose…";
      picker.appendChild(o);
    }
    picker.value = keys.includes(current) ? current : "";
  }
  const draw = (sandbox) => {
    for (const fig of figures) {
      const spec = JSON.parse(fig.dataset.chart);
      if (spec.source.startsWith("sandbox") && sandbox === null) continue;
      drawChart(fig.querySelector(".plot"), linesFor(spec, runs, series, sandbox || {}, picker && picker.value),
                spec.ylabel || (picker && picker.value));
      fig.dataset.drawn = "1";
    }
  };
  draw(null);  // the metrics first: the sandbox statistics of a large run take longer the first time
  if (picker && !picker.dataset.bound) {
    picker.dataset.bound = "1";
    picker.addEventListener("change", () => drawCharts(section));
  }
  if (needSandbox) {
    const sb = await getJSON(`/api/sandbox?${q}`);
    draw(Object.fromEntries(sb.runs.map(r => [r.name, r.steps])));
  }
  section.dataset.ready = "1";
}

function follow() {
  const body = document.body;
  const seconds = parseFloat(body.dataset.refresh || "0");
  const runs = body.dataset.runs ? JSON.parse(body.dataset.runs) : [];
  if (!seconds || !runs.length) return;
  let last = null;
  const tick = async () => {
    try {
      const rev = await getJSON(`/api/revision?${runQuery(runs)}`);
      const token = JSON.stringify(Object.values(rev).map(r => r.revision));
      const running = Object.values(rev).some(r => r.running);
      if (last !== null && token !== last) {
        const section = document.querySelector("section.charts");
        if (section) {
          await drawCharts(section);
        } else {
          const live = document.getElementById("live");
          live.hidden = false;
          live.textContent = "";
          const a = document.createElement("a");
          a.href = window.location.href;
          a.textContent = "new data: reload";
          live.appendChild(a);
        }
      }
      last = token;
      if (running || last === null) setTimeout(tick, seconds * 1000);
      else setTimeout(tick, seconds * 4000);  // a finished run rarely changes: look less often
    } catch (e) {
      setTimeout(tick, seconds * 4000);
    }
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  const section = document.querySelector("section.charts");
  if (section) drawCharts(section).catch(e => { section.dataset.error = String(e); });
  for (const select of document.querySelectorAll("form.filters select.auto")) {
    select.addEventListener("change", () => select.form.submit());
  }
  follow();
});
