// quakesync dashboard: live updates from the event stream (GET ./events/stream).
// Served by status-http at ./static/live.js, allowed by the page's CSP (script-src 'self').
// Without scripts the page stays as rendered (and refreshes itself). The hooks it uses are
// written by dashboard.rs: svg#world-map (projection and stream attributes), g#map-events
// (circles with data-id, data-time, data-mag) and the rows of #events (time first, id last).
(function () {
  "use strict";
  var svg = document.getElementById("world-map");
  var layer = document.getElementById("map-events");
  if (!svg || !layer || !window.EventSource || !svg.dataset.stream) return;
  var NS = "http://www.w3.org/2000/svg";
  var d = svg.dataset;
  var units = parseFloat(d.unitsPerDegree), base = parseFloat(d.radiusBase);
  var growth = parseFloat(d.radiusGrowth), unknown = parseFloat(d.radiusUnknown || "3");
  var maxPoints = parseInt(d.maxEvents || "200", 10);
  var tbody = document.querySelector("#events tbody");
  var maxRows = parseInt(d.maxRows || "50", 10);
  var AGES = [["age-hour", 3600], ["age-day", 86400], ["age-week", 604800]];

  function byId(parent, selector, id) {
    var all = parent ? parent.querySelectorAll(selector) : [];
    for (var i = 0; i < all.length; i++) if (all[i].getAttribute("data-id") === id) return all[i];
    return null;
  }
  // A row of the events table by its id (its last cell).
  function rowOf(id) {
    var rows = tbody ? tbody.querySelectorAll("tr") : [];
    for (var i = 0; i < rows.length; i++) {
      var last = rows[i].lastElementChild;
      if (last && !last.hasAttribute("colspan") && last.textContent === id) return rows[i];
    }
    return null;
  }
  // A row's origin time in ms, from its first cell ("2026-11-29 12:00:00 UTC").
  function rowTime(tr) {
    var t = tr.firstElementChild ? tr.firstElementChild.textContent : "";
    return Date.parse(t.replace(" UTC", "Z").replace(" ", "T"));
  }
  function ageClass(ms) {
    var age = (Date.now() - ms) / 1000;
    for (var i = 0; i < AGES.length; i++) if (age < AGES[i][1]) return AGES[i][0];
    return "age-older";
  }
  function radius(mag) {
    if (typeof mag !== "number" || !isFinite(mag)) return unknown;
    return base * Math.pow(growth, Math.min(Math.max(mag, 0), 10));
  }
  function when(ms) {
    return new Date(ms).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }
  function iso(ms) { return new Date(ms).toISOString().slice(0, 19) + "Z"; }
  function clamp(v, lo, hi) { return Math.min(Math.max(v, lo), hi); }

  function point(f) {
    var p = f.properties || {}, c = (f.geometry && f.geometry.coordinates) || [0, 0];
    var circle = byId(layer, "circle", f.id);
    if (!circle) {
      circle = document.createElementNS(NS, "circle");
      circle.setAttribute("data-id", f.id);
      circle.appendChild(document.createElementNS(NS, "title"));
      layer.appendChild(circle);
    }
    circle.setAttribute("class", "quake " + ageClass(p.time) + " live");
    circle.setAttribute("data-time", iso(p.time));
    circle.setAttribute("data-mag", typeof p.mag === "number" ? String(p.mag) : "");
    circle.setAttribute("cx", ((clamp(c[0], -180, 180) + 180) * units).toFixed(1));
    circle.setAttribute("cy", ((90 - clamp(c[1], -90, 90)) * units).toFixed(1));
    circle.setAttribute("r", radius(p.mag).toFixed(1));
    var mag = typeof p.mag === "number" ? "M" + p.mag.toFixed(1) : "M?";
    circle.firstChild.textContent = mag + " · " + (p.place || "–") + " · " + when(p.time);
    var all = layer.querySelectorAll("circle");
    if (all.length > maxPoints) {
      var oldest = all[0];
      for (var i = 1; i < all.length; i++)
        if (all[i].getAttribute("data-time") < oldest.getAttribute("data-time")) oldest = all[i];
      oldest.remove();
    }
  }

  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function row(f) {
    if (!tbody) return;
    var p = f.properties || {}, c = (f.geometry && f.geometry.coordinates) || [];
    var tr = document.createElement("tr");
    tr.className = "live";
    cell(tr, when(p.time));
    var mag = typeof p.mag === "number" ? p.mag.toFixed(1) + (p.magType ? " " + p.magType : "") : "–";
    cell(tr, mag, "num");
    cell(tr, p.place || "–", "place");
    cell(tr, typeof c[2] === "number" ? c[2].toFixed(1) + " km" : "–", "num");
    cell(tr, p.status || "", "s-" + (p.status || ""));
    var id = cell(tr, "");
    if (typeof p.url === "string" && /^https?:\/\//.test(p.url)) {
      var a = document.createElement("a");
      a.href = p.url;
      a.rel = "noopener noreferrer";
      a.textContent = f.id;
      id.appendChild(a);
    } else {
      id.textContent = f.id;
    }
    var old = rowOf(f.id);
    if (old) old.remove();
    var placeholder = tbody.querySelector("td[colspan]");
    if (placeholder) placeholder.parentNode.remove();
    // Newest first: before the first row with an older origin time.
    var rows = tbody.querySelectorAll("tr"), before = null;
    for (var i = 0; i < rows.length; i++) {
      var t = rowTime(rows[i]);
      if (!isNaN(t) && t < p.time) { before = rows[i]; break; }
    }
    tbody.insertBefore(tr, before);
    while (tbody.querySelectorAll("tr").length > maxRows) tbody.lastElementChild.remove();
  }

  function forget(id) {
    var c = byId(layer, "circle", id);
    if (c) c.remove();
    var r = rowOf(id);
    if (r) r.remove();
  }

  function feature(e) {
    var f = JSON.parse(e.data);
    if (!f || !f.id || !f.properties || typeof f.properties.time !== "number") return;
    point(f);
    row(f);
  }
  function gone(e) { forget(JSON.parse(e.data).id); }

  var url = d.stream + (d.streamSince ? "?since=" + encodeURIComponent(d.streamSince) : "");
  var source = new EventSource(url);
  source.addEventListener("insert", feature);
  source.addEventListener("update", feature);
  source.addEventListener("delete", gone);
  source.addEventListener("merge", gone);
  // Changes were pruned before this page could hear them: draw it anew.
  source.addEventListener("lost", function () { location.reload(); });
  source.addEventListener("open", function () { document.documentElement.setAttribute("data-live", "on"); });
  source.addEventListener("error", function () { document.documentElement.setAttribute("data-live", "off"); });
})();
