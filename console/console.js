// The hllm console: polls /api/status and redraws. No library, no network beyond this server (works offline).
// Data from the job is only ever set as text (textContent), never parsed as HTML.
(function () {
  "use strict";
  // The token never travels in this page's URLs: the console exchanged `?token=` for an HttpOnly session cookie
  // (and redirected here without it), which the browser sends with every same-origin request below. A token left in
  // the address (a console without a token does not redirect) is removed from the address bar and the history.
  if (/[?&]token=/.test(window.location.search) && window.history && window.history.replaceState) {
    window.history.replaceState(null, "", window.location.pathname);
  }
  var colors = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"];
  var stageColor = {};
  var polls = 0;
  var lastOk = 0;
  var period = 1000;

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    (children || []).forEach(function (c) {
      e.appendChild(typeof c === "object" && c !== null ? c : document.createTextNode(c === null || c === undefined ? "" : String(c)));
    });
    return e;
  }
  function svgEl(tag, attrs) {
    var e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fix(v, d) { return isNum(v) ? v.toFixed(d) : "-"; }
  function dur(s) {
    if (!isNum(s) || s < 0) return "-";
    s = Math.round(s);
    if (s >= 3600) return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
    if (s >= 60) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
    return s + "s";
  }
  function bytes(b) {
    var u = ["B", "kB", "MB", "GB", "TB"], i = 0;
    while (b >= 1000 && i < 4) { b /= 1000; i++; }
    return (i ? b.toFixed(1) : String(b)) + " " + u[i];
  }
  function clock(ms) { return ms ? new Date(ms).toLocaleTimeString() : "-"; }
  function colorOf(stage) {
    if (!(stage in stageColor)) stageColor[stage] = colors[Object.keys(stageColor).length % colors.length];
    return stageColor[stage];
  }
  function fillBody(table, rows) {
    var body = $(table).querySelector("tbody");
    var fresh = el("tbody", null, rows);
    body.parentNode.replaceChild(fresh, body);
  }
  function badge(state) { return el("span", { "class": "badge " + state }, [state]); }

  function card(k, v, id) { return el("div", { "class": "card", id: id }, [el("div", { "class": "k" }, [k]), el("div", { "class": "v" }, [v])]); }

  function drawJob(doc) {
    var j = doc.job || {};
    var best = [];
    for (var s in (j.best || {})) best.push(s + " " + fix(j.best[s].ndcg200, 2) + " (e" + (j.best[s].epoch + 1) + ")");
    var cards = [
      card("phase", j.phase || "-", "card-phase"),
      card("stage", j.stage || "-", "card-stage"),
      card("epoch", isNum(j.epoch) ? String(j.epoch + 1) : "-", "card-epoch"),
      card("step", (isNum(j.step) ? j.step : "-") + " / " + (isNum(j.steps_total) ? j.steps_total : "-"), "card-step"),
      card("steps/s", fix(j.steps_per_s, 2), "card-steps-per-s"),
      card("samples/s", fix(j.samples_per_s, 0), "card-samples-per-s"),
      card("ETA (stage)", dur(j.eta_s), "card-eta"),
      card("loss", fix(j.loss, 4), "card-loss"),
      card("top-10 acc.", fix(j.top10, 3), "card-top10"),
      card("best valid. N@200", best.length ? best.join(", ") : "-", "card-best"),
      card("worker respawns", isNum(j.respawns) ? String(j.respawns) : "-", "card-respawns")
    ];
    var box = $("job-cards");
    while (box.firstChild) box.removeChild(box.firstChild);
    cards.forEach(function (c) { box.appendChild(c); });
    var pct = isNum(j.step) && isNum(j.steps_total) && j.steps_total > 0 ? Math.min(100, 100 * j.step / j.steps_total) : 0;
    $("progress-bar").style.width = pct + "%";
  }

  // One line chart: series = [{name, xs, ys}], drawn into an SVG of 480 x 220 with axes and min/max labels.
  function chart(id, series, opts) {
    var svg = $(id);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var W = 480, H = 220, L = 44, R = 8, T = 8, B = 22;
    var xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity, n = 0;
    series.forEach(function (s) {
      for (var i = 0; i < s.xs.length; i++) {
        if (!isNum(s.ys[i])) continue;
        xmin = Math.min(xmin, s.xs[i]); xmax = Math.max(xmax, s.xs[i]);
        ymin = Math.min(ymin, s.ys[i]); ymax = Math.max(ymax, s.ys[i]);
        n++;
      }
    });
    svg.setAttribute("data-points", String(n));
    svg.setAttribute("data-last-x", isFinite(xmax) ? String(xmax) : "");
    for (var g = 0; g <= 4; g++) {
      var gy = T + (H - T - B) * g / 4;
      svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: gy, y2: gy, "class": "grid" }));
    }
    svg.appendChild(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, "class": "axis" }));
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, "class": "axis" }));
    if (n === 0) {
      var t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" });
      t.textContent = opts.empty || "no data yet";
      svg.appendChild(t);
      return;
    }
    if (xmax === xmin) { xmax = xmin + 1; }
    if (ymax === ymin) { ymax = ymin + 1e-6 + Math.abs(ymin) * 0.01; ymin -= Math.abs(ymin) * 0.01; }
    function px(x) { return L + (W - L - R) * (x - xmin) / (xmax - xmin); }
    function py(y) { return H - B - (H - T - B) * (y - ymin) / (ymax - ymin); }
    series.forEach(function (s) {
      var pts = [];
      // At most ~800 vertices per line (a long ring would only cost the browser time): every k-th point, the last
      // one always.
      var k = Math.max(1, Math.ceil(s.xs.length / 800));
      for (var i = 0; i < s.xs.length; i++) {
        if ((i % k !== 0 && i !== s.xs.length - 1) || !isNum(s.ys[i])) continue;
        pts.push(px(s.xs[i]).toFixed(1) + "," + py(s.ys[i]).toFixed(1));
      }
      if (opts.dots) {
        for (var k = 0; k < s.xs.length; k++) if (isNum(s.ys[k])) svg.appendChild(svgEl("circle", { cx: px(s.xs[k]), cy: py(s.ys[k]), r: 3, fill: colorOf(s.name) }));
      }
      if (pts.length) svg.appendChild(svgEl("polyline", { points: pts.join(" "), stroke: colorOf(s.name), "data-stage": s.name }));
    });
    var labels = [[L - 4, T + 8, fix(ymax, opts.digits), "end"], [L - 4, H - B, fix(ymin, opts.digits), "end"],
                  [L, H - 6, String(Math.round(xmin)), "start"], [W - R, H - 6, String(Math.round(xmax)) + " " + (opts.xlabel || ""), "end"]];
    labels.forEach(function (l) {
      var t = svgEl("text", { x: l[0], y: l[1], "text-anchor": l[3] });
      t.textContent = l[2];
      svg.appendChild(t);
    });
  }

  function drawCurves(doc) {
    var order = doc.curve_order || [];
    var loss = [], top = [];
    order.forEach(function (s) {
      var c = doc.curves[s];
      loss.push({ name: s, xs: c.step, ys: c.loss });
      top.push({ name: s, xs: c.step, ys: c.top10 });
    });
    chart("loss-chart", loss, { digits: 3, xlabel: "step" });
    chart("top10-chart", top, { digits: 3, xlabel: "step" });
    var byStage = {};
    (doc.validation || []).forEach(function (v) {
      (byStage[v.stage] = byStage[v.stage] || { name: v.stage, xs: [], ys: [] });
      byStage[v.stage].xs.push(v.epoch + 1); byStage[v.stage].ys.push(v.ndcg200);
    });
    chart("valid-chart", Object.keys(byStage).map(function (k) { return byStage[k]; }),
          { digits: 2, xlabel: "epoch", dots: true, empty: "no validation yet" });
    var legend = $("legend");
    while (legend.firstChild) legend.removeChild(legend.firstChild);
    Object.keys(stageColor).forEach(function (s) {
      var sp = el("span", null, [s]);
      sp.style.setProperty("--c", stageColor[s]);
      legend.appendChild(sp);
    });
  }

  function drawActors(doc) {
    var rows = (doc.actors || []).concat(doc.monitor ? [doc.monitor] : []).map(function (a) {
      var err = a.reachable ? (a.last_error || "") : (a.poll_error || "");
      return el("tr", { "data-actor": a.name }, [
        el("td", null, [a.name]), el("td", null, [a.kind || "-"]), el("td", null, [a.where || "-"]),
        el("td", null, [badge(a.state || "unpolled")]),
        el("td", { "class": "num" }, [isNum(a.queue_depth) ? a.queue_depth : "-"]),
        el("td", { "class": "num" }, [isNum(a.in_flight) ? a.in_flight : "-"]),
        el("td", { "class": "num" }, [fix(a.messages_per_s, 1)]),
        el("td", { "class": "num" }, [isNum(a.restarts) ? a.restarts : "-"]),
        el("td", { "class": "num" }, [isNum(a.step) ? a.step : "-"]),
        el("td", { "class": "num" }, [isNum(a.last_seen_age_s) ? dur(a.last_seen_age_s) + " ago" : (a.reachable ? "now" : "never")]),
        el("td", { "class": "err" }, [err])
      ]);
    });
    fillBody("actors", rows);
    $("actor-count").textContent = "(" + rows.length + ")";
  }

  function drawCache(doc) {
    var box = $("cache");
    while (box.firstChild) box.removeChild(box.firstChild);
    var shards = doc.cache || [];
    if (!shards.length) box.appendChild(el("div", { "class": "muted" }, ["no cache shards"]));
    shards.forEach(function (c) {
      var fill = el("div", { "class": "fill" });
      fill.style.width = Math.min(100, 100 * (c.coverage || 0)) + "%";
      box.appendChild(el("div", { "class": "bar" }, [
        el("span", { "class": "label" }, ["shard " + c.shard]),
        el("div", { "class": "track" }, [fill]),
        el("span", { "class": "pct" }, [fix(100 * (c.coverage || 0), 1) + "% (" + c.rows_present + "/" + c.rows_expected + ")"])
      ]));
    });
  }

  function drawCheckpoints(doc) {
    fillBody("checkpoints", (doc.checkpoints || []).map(function (c) {
      return el("tr", null, [
        el("td", null, [c.name + (c.latest ? "  (latest)" : "")]), el("td", null, [c.kind]),
        el("td", { "class": "num" }, [bytes(c.bytes)]),
        el("td", null, [clock(c.mtime_unix_ms) + " (" + dur(c.age_s) + " ago)"]),
        el("td", { "class": "num" }, [isNum(c.write_s) ? c.write_s.toFixed(2) + " s" : "-"])
      ]);
    }));
  }

  function drawDead(doc) {
    var dead = (doc.dead || []).slice().reverse();
    fillBody("dead", dead.map(function (d) {
      return el("tr", null, [
        el("td", null, [clock(d.at_unix_ms)]), el("td", null, [d.name]), el("td", null, [d.kind || "-"]),
        el("td", null, [d.where || "-"]), el("td", { "class": "err" }, [d.cause]),
        el("td", null, [d.last_state || "-"]), el("td", { "class": "err" }, [d.last_error || ""])
      ]);
    }));
    $("dead-count").textContent = "(" + dead.length + (doc.limits ? ", at most " + doc.limits.dead_kept + " kept)" : ")");
  }

  function draw(doc) {
    $("job-id").textContent = "job " + doc.job_id + " · epoch " + doc.job_epoch;
    drawJob(doc);
    drawCurves(doc);
    drawActors(doc);
    drawCache(doc);
    drawCheckpoints(doc);
    drawDead(doc);
    if (doc.limits && doc.limits.interval_ms) period = Math.max(250, Math.min(5000, doc.limits.interval_ms));
  }

  function setConn(state, text) {
    var c = $("conn");
    c.className = "badge " + state;
    c.textContent = text;
  }

  function poll() {
    fetch("api/status", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) throw new Error("401: not signed in (open the console's address with ?token=... once; a restarted job wants it again)");
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (doc) {
        polls++;
        lastOk = Date.now();
        draw(doc);
        setConn("live", "live");
        document.body.setAttribute("data-polls", String(polls));
        $("updated").textContent = "updated " + new Date(doc.written_at_unix_ms).toLocaleTimeString();
      })
      .catch(function (e) {
        setConn(lastOk ? "lost" : "stale", (lastOk ? "connection lost: " : "") + e.message);
      })
      .then(function () { setTimeout(poll, period); });
  }

  $("api-link").setAttribute("href", "api/status");
  $("metrics-link").setAttribute("href", "metrics");
  poll();
})();
