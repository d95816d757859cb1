// Metric charts (uPlot): every .metric-group on the page (or swapped in by
// htmx) draws its .chart figures from /api/v1/metrics/series for the chosen
// range, and for ranges up to 24 h follows /api/v1/metrics/live (server-sent
// events) while the page is open. A missing sample is a gap (null), never 0.
(function () {
  "use strict";
  var RANGES = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };

  function fmt(unit, v) {
    if (v === null || v === undefined) return "–";
    if (unit === "B" || unit === "B/s") {
      var u = ["", "Ki", "Mi", "Gi", "Ti"], i = 0, x = Math.abs(v);
      while (x >= 1024 && i < u.length - 1) { x /= 1024; i++; }
      return (v < 0 ? "-" : "") + x.toFixed(x < 10 && i > 0 ? 1 : 0) + " " + u[i] + (unit === "B/s" ? "B/s" : "B");
    }
    return (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(1)) + (unit ? " " + unit : "");
  }

  function fetchSeries(target, metric, since, until) {
    var q = "/api/v1/metrics/series?target=" + encodeURIComponent(target) + "&metric=" + encodeURIComponent(metric) +
      "&since=" + since + "&until=" + until;
    return fetch(q, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.json();
    });
  }

  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

  function draw(fig, answers, labels) {
    var unit = fig.dataset.unit;
    var ts = answers.length ? answers[0].timestamps : [];
    var data = [ts];
    var points = 0;
    answers.forEach(function (a) {
      data.push(a.values);
      a.values.forEach(function (v) { if (v !== null) points++; });
    });
    if (fig._plot) { fig._plot.destroy(); fig._plot = null; }
    var old = fig.querySelector(".empty");
    if (old) old.remove();
    fig.dataset.points = String(points);
    if (points === 0) {
      var p = document.createElement("p");
      p.className = "empty hint";
      p.textContent = fig.dataset.empty;
      fig.appendChild(p);
    }
    var series = [{}];
    labels.forEach(function (l, i) {
      series.push({ label: l, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
        value: function (u, v) { return fmt(unit, v); } });
    });
    var width = Math.max(300, Math.min(fig.clientWidth || 600, 900));
    var opts = {
      width: width, height: 200, series: series,
      axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return fmt(unit, v); }); }, size: 70 }],
      scales: unit === "%" ? { y: { range: [0, 100] } } : {},
    };
    fig._plot = new uPlot(opts, data, fig);
    fig._data = data;
  }

  function setupGroup(group) {
    if (group.dataset.ready) return;
    group.dataset.ready = "1";
    var figs = Array.prototype.slice.call(group.querySelectorAll(".chart"));
    var state = group.querySelector(".live-state");
    var source = null;
    var range = "1h";

    function load() {
      var until = Math.floor(Date.now() / 1000), since = until - RANGES[range];
      figs.forEach(function (fig) {
        var targets = fig.dataset.targets.split(","), labels = fig.dataset.labels.split(",");
        Promise.all(targets.map(function (t) { return fetchSeries(t, fig.dataset.metric, since, until); }))
          .then(function (answers) { fig.dataset.step = answers.length ? answers[0].step : ""; draw(fig, answers, labels); })
          .catch(function (e) { fig.dataset.error = String(e); });
      });
      follow(RANGES[range] <= 86400);
    }

    function follow(on) {
      if (source) { source.close(); source = null; }
      if (state) state.textContent = on ? state.dataset.on : state.dataset.off;
      if (!on) return;
      var targets = {};
      figs.forEach(function (f) { f.dataset.targets.split(",").forEach(function (t) { targets[t] = 1; }); });
      source = new EventSource("/api/v1/metrics/live?target=" + encodeURIComponent(Object.keys(targets).join(",")));
      source.addEventListener("samples", function (ev) {
        var pts = JSON.parse(ev.data);
        figs.forEach(function (fig) { append(fig, pts); });
      });
      // The server's last word (access revoked): no reconnecting.
      source.addEventListener("end", function () {
        if (source) { source.close(); source = null; }
        if (state) state.textContent = group.dataset.liveEnded;
      });
      source.onerror = function () {
        if (source && source.readyState === EventSource.CLOSED && state) state.textContent = group.dataset.liveEnded;
      };
    }

    function append(fig, pts) {
      if (!fig._plot) return;
      var targets = fig.dataset.targets.split(",");
      var mine = pts.filter(function (p) { return p.metric === fig.dataset.metric && targets.indexOf(p.target) >= 0; });
      if (!mine.length) return;
      var ts = mine[0].ts, data = fig._data;
      var last = data[0].length ? data[0][data[0].length - 1] : 0;
      if (ts <= last) return;
      data[0].push(ts);
      targets.forEach(function (t, i) {
        var p = mine.filter(function (x) { return x.target === t; })[0];
        data[i + 1].push(p ? p.value : null);
      });
      fig.dataset.points = String(Number(fig.dataset.points || 0) + mine.length);
      var empty = fig.querySelector(".empty");
      if (empty) empty.remove();
      fig._plot.setData(data);
    }

    group.querySelectorAll(".range-btn").forEach(function (b) {
      b.addEventListener("click", function () {
        group.querySelectorAll(".range-btn").forEach(function (x) { x.classList.remove("active"); });
        b.classList.add("active");
        range = b.dataset.range;
        load();
      });
    });
    group.querySelectorAll("a.csv").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        var fig = document.getElementById("chart-" + a.dataset.chart);
        var until = Math.floor(Date.now() / 1000), since = until - RANGES[range];
        fig.dataset.targets.split(",").forEach(function (t) {
          window.location = "/api/v1/metrics/series?format=csv&target=" + encodeURIComponent(t) +
            "&metric=" + fig.dataset.metric + "&since=" + since + "&until=" + until;
        });
      });
    });
    window.addEventListener("beforeunload", function () { if (source) source.close(); });
    load();
  }

  function init(root) {
    if (typeof uPlot === "undefined") return;
    (root || document).querySelectorAll(".metric-group").forEach(setupGroup);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { init(document); });
  } else {
    init(document);
  }
  document.addEventListener("htmx:afterSettle", function (e) { init(e.target); });
  window.addEventListener("load", function () { init(document); });
})();
