// Draws the chart specs of xplain/display/charts.py as inline SVG in the browser: the batch report and the chat
// page use this, notebooks and `.plot()` use matplotlib on the same spec. Plain JS, no dependencies.
// xplainCharts.svg(spec, {width}) -> an SVG string; xplainCharts.drawAll(root, specs) fills every
// [data-chart] element under root with the chart of specs[element.dataset.chart].
(function (global) {
  "use strict";
  var POSITIVE = "#2e7d32", NEGATIVE = "#c62828", SERIES = ["#1565c0", "#ef6c00", "#6a1b9a", "#00838f"];

  function esc(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }

  function svg(spec, options) {
    options = options || {};
    var width = options.width || 420, labels = spec.labels, series = spec.series;
    var barH = series.length > 1 ? 9 : 14, groupH = barH * series.length + 6;
    var longest = labels.reduce(function (m, l) { return Math.max(m, l.length); }, 0);
    var labelW = Math.min(200, 12 + 6.2 * longest), top = 20, plotW = width - labelW - 46;
    var legendH = series.length > 1 ? 16 : 0;
    var height = top + Math.max(labels.length, 1) * groupH + 24 + legendH;
    var values = [];
    series.forEach(function (s) { s.values.forEach(function (v) { if (v !== null) values.push(v); }); });
    if (spec.reference) values.push(spec.reference.value);
    var lo = Math.min(0, Math.min.apply(null, values.concat([0])));
    var hi = Math.max(0, Math.max.apply(null, values.concat([0])));
    var span = (hi - lo) || 1, scale = plotW / span, zero = labelW + (-lo) * scale;
    var out = ['<svg xmlns="http://www.w3.org/2000/svg" class="xplain-chart" width="' + width + '" height="' + height +
               '" font-family="system-ui,sans-serif" role="img" aria-label="' + esc(spec.title) + '">'];
    out.push('<text x="2" y="13" font-size="12" font-weight="600">' + esc(spec.title) + "</text>");
    labels.forEach(function (label, i) {
      var y0 = top + i * groupH;
      out.push('<text x="' + (labelW - 6) + '" y="' + (y0 + groupH / 2 + 4) + '" font-size="11" text-anchor="end">' +
               "<title>" + esc(label) + "</title>" + esc(label) + "</text>");
      series.forEach(function (s, k) {
        var v = s.values[i];
        if (v === null || v === undefined) return;
        var colour = series.length > 1 ? SERIES[k % SERIES.length]
                   : spec.colors ? spec.colors[i] : spec.signed ? (v >= 0 ? POSITIVE : NEGATIVE) : SERIES[0];
        var x = v >= 0 ? zero : zero + v * scale, y = y0 + 3 + k * barH, w = Math.max(Math.abs(v) * scale, 1);
        out.push('<rect x="' + x.toFixed(1) + '" y="' + y + '" width="' + w.toFixed(1) + '" height="' + (barH - 2) +
                 '" fill="' + colour + '"><title>' + esc(s.name + ": " + v.toPrecision(3)) + "</title></rect>");
        if (series.length === 1)
          out.push('<text x="' + (Math.max(x + w, zero) + 3).toFixed(1) + '" y="' + (y + barH - 4) +
                   '" font-size="10" fill="#444">' + (+v.toPrecision(3)) + "</text>");
      });
    });
    var bottom = top + Math.max(labels.length, 1) * groupH;
    out.push('<line x1="' + zero.toFixed(1) + '" y1="' + top + '" x2="' + zero.toFixed(1) + '" y2="' + bottom +
             '" stroke="#555"/>');
    if (spec.reference) {
      var rx = (zero + spec.reference.value * scale).toFixed(1);
      out.push('<line x1="' + rx + '" y1="' + top + '" x2="' + rx + '" y2="' + bottom +
               '" stroke="#333" stroke-dasharray="4 3"><title>' + esc(spec.reference.label) + "</title></line>");
    }
    if (!labels.length)
      out.push('<text x="' + (width / 2) + '" y="' + (top + 14) + '" font-size="11" fill="#777" text-anchor="middle">' +
               "nothing to draw</text>");
    out.push('<text x="' + (labelW + plotW / 2) + '" y="' + (bottom + 16) + '" font-size="10" fill="#555" ' +
             'text-anchor="middle">' + esc(spec.xlabel) + "</text>");
    if (series.length > 1) {
      var lx = labelW;
      series.forEach(function (s, k) {
        out.push('<rect x="' + lx + '" y="' + (bottom + 24) + '" width="9" height="9" fill="' + SERIES[k % SERIES.length] +
                 '"/><text x="' + (lx + 12) + '" y="' + (bottom + 32) + '" font-size="10">' + esc(s.name) + "</text>");
        lx += 20 + 6 * s.name.length;
      });
    }
    out.push("</svg>");
    return out.join("");
  }

  function drawAll(root, specs, options) {
    var nodes = root.querySelectorAll("[data-chart]");
    for (var i = 0; i < nodes.length; i++) {
      var spec = specs[nodes[i].getAttribute("data-chart")];
      if (spec) nodes[i].innerHTML = svg(spec, options);
    }
  }

  global.xplainCharts = {svg: svg, drawAll: drawAll};
})(typeof window !== "undefined" ? window : globalThis);
