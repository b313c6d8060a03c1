// Stepwise web view: draws state machine graphs with the vendored dagre,
// shows a clicked state's data, and keeps pages live by short polling.
// Every payload is put into the page with textContent, never as HTML.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, parent) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function el(tag, className, text, parent) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function island(id) {
    var node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  function label(node) {
    if (node.role === "fork") { return node.state + " (" + node.type + ")"; }
    if (node.role === "join") { return "end of " + node.state; }
    return node.id;
  }

  function drawGraph(container) {
    var data = island(container.getAttribute("data-graph"));
    var details = container.hasAttribute("data-details")
      ? island(container.getAttribute("data-details")) : null;
    var g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
    g.setGraph({ rankdir: "TB", nodesep: 20, ranksep: 14, edgesep: 10, marginx: 12, marginy: 12 });
    g.setDefaultEdgeLabel(function () { return {}; });
    data.nodes.forEach(function (node) {
      if (node.group) {
        g.setNode(node.id, { node: node });
      } else {
        var text = label(node);
        var small = node.role === "join";
        g.setNode(node.id, {
          node: node, label: text,
          width: small ? Math.max(60, text.length * 6.5 + 16) : Math.max(80, text.length * 7.5 + 28),
          height: small ? 22 : 36
        });
      }
    });
    data.nodes.forEach(function (node) { if (node.parent) { g.setParent(node.id, node.parent); } });
    data.edges.forEach(function (edge, index) {
      var text = edge.label || "";
      g.setEdge(edge.from, edge.to, {
        edge: edge, label: text, width: text ? text.length * 6.2 + 8 : 0,
        height: text ? 16 : 0, labelpos: "c"
      }, "e" + index);
    });
    dagre.layout(g);
    var size = g.graph();
    var root = svg("svg", {
      "class": "graph-svg", width: size.width, height: size.height,
      viewBox: "0 0 " + size.width + " " + size.height, role: "img",
      "aria-label": "State machine graph"
    });
    var defs = svg("defs", {}, root);
    ["arrow", "arrow-catch"].forEach(function (id) {
      var marker = svg("marker", {
        id: id + "-" + container.getAttribute("data-graph"), viewBox: "0 0 10 10", refX: 9, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse", "class": id
      }, defs);
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z" }, marker);
    });
    var groups = svg("g", { "class": "groups" }, root);
    var edges = svg("g", { "class": "edges" }, root);
    var nodes = svg("g", { "class": "nodes" }, root);
    // Outer groups first, so nested ones are drawn on top.
    var depth = function (id) { var n = 0; var p = g.parent(id); while (p) { n += 1; p = g.parent(p); } return n; };
    g.nodes().filter(function (id) { return g.node(id).node.group; })
      .sort(function (a, b) { return depth(a) - depth(b); })
      .forEach(function (id) {
        var box = g.node(id);
        var node = box.node;
        var cls = "cluster " + (node.type === "Branch" || node.type === "Processor" ? "inner" : "outer") +
          " " + (node.outcome || "");
        var group = svg("g", { "class": cls, "data-group": node.id }, groups);
        svg("rect", { x: box.x - box.width / 2, y: box.y - box.height / 2, width: box.width, height: box.height, rx: 8 }, group);
        var caption = node.type === "Branch" ? "branch " + node.id.split("#branch")[1]
          : node.type === "Processor" ? "item processor" : "";
        if (caption) {
          svg("title", {}, group).textContent = node.state + ": " + caption;
        }
      });
    g.edges().forEach(function (ref) {
      var info = g.edge(ref);
      var kind = info.edge.kind;
      var points = info.points.map(function (p) { return p.x + "," + p.y; }).join(" ");
      var group = svg("g", { "class": "edge " + kind }, edges);
      svg("polyline", {
        points: points,
        "marker-end": "url(#" + (kind === "catch" ? "arrow-catch-" : "arrow-") + container.getAttribute("data-graph") + ")"
      }, group);
      if (info.label) {
        svg("rect", { x: info.x - info.width / 2, y: info.y - 8, width: info.width, height: 16, rx: 3, "class": "edge-label" }, group);
        svg("text", { x: info.x, y: info.y + 4, "text-anchor": "middle" }, group).textContent = info.label;
      }
    });
    g.nodes().forEach(function (id) {
      var box = g.node(id);
      var node = box.node;
      if (node.group) { return; }
      var group = svg("g", {
        "class": "node " + (node.outcome || "plain") + (node.role ? " " + node.role : ""),
        "data-state": node.state, "data-outcome": node.outcome || "", tabindex: 0
      }, nodes);
      svg("rect", { x: box.x - box.width / 2, y: box.y - box.height / 2, width: box.width, height: box.height, rx: node.role === "join" ? 11 : 6 }, group);
      svg("text", { x: box.x, y: box.y + 4, "text-anchor": "middle" }, group).textContent = box.label;
      svg("title", {}, group).textContent = node.state + " · " + node.type + (node.outcome ? " · " + node.outcome : "");
      if (details) {
        var open = function () { showState(details, node.state); };
        group.addEventListener("click", open);
        group.addEventListener("keydown", function (event) { if (event.key === "Enter") { open(); } });
      }
    });
    container.appendChild(root);
  }

  function payload(title, text, parent) {
    var block = el("div", "step", null, parent);
    el("h4", null, title, block);
    var shown = text;
    if (text !== null && text !== undefined) {
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { shown = text; }
    }
    el("pre", "payload", shown === null || shown === undefined ? "—" : shown, block);
  }

  function showState(details, name) {
    var panel = document.getElementById("state-panel");
    panel.textContent = "";
    panel.setAttribute("data-state", name);
    try { sessionStorage.setItem("stepwise-state:" + location.pathname, name); } catch (e) { /* private mode */ }
    var info = details[name];
    el("h2", null, name, panel);
    if (!info) { el("p", "empty", "Not reached.", panel); return; }
    el("p", "status " + info.outcome, info.outcome, panel);
    var counts = "entered " + info.entered + " · exited " + info.exited + " · task attempts " +
      info.attempts + " · errors " + info.failures;
    Object.keys(info.iterations || {}).forEach(function (phase) {
      counts += " · iterations " + phase.toLowerCase() + " " + info.iterations[phase];
    });
    el("p", "counts", counts, panel);
    if (info.entered > info.visits.length) {
      el("p", "note", "Showing the latest " + info.visits.length + " of " + info.entered + " visits.", panel);
    }
    info.visits.forEach(function (visit, index) {
      var box = el("div", "visit", null, panel);
      el("h3", null, "Visit " + (info.entered - info.visits.length + index + 1) +
        (visit.seconds !== null ? " · " + visit.seconds.toFixed(3) + " s" : " · running"), box);
      payload("State input", visit.input, box);
      visit.attempts.forEach(function (attempt, number) {
        var title = "Attempt " + (number + 1) + " · " + attempt.resource +
          (attempt.seconds !== null ? " · " + attempt.seconds.toFixed(3) + " s" : "");
        el("h4", "attempt", title, box);
        payload("Task input (after InputPath and Parameters)", attempt.parameters, box);
        if (attempt.error) {
          el("p", "error", attempt.error + ": " + (attempt.cause || ""), box);
        } else {
          payload("Task result", attempt.result, box);
        }
      });
      visit.errors.forEach(function (error) {
        if (!visit.attempts.length) { el("p", "error", error.error + ": " + error.cause, box); }
      });
      payload("State output (after ResultSelector, ResultPath and OutputPath)", visit.output, box);
    });
  }

  function poll(url, every, handle) {
    var tick = function () {
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (answer) { return answer.ok ? answer.text() : null; })
        .then(function (text) { if (text !== null && handle(text) === false) { return; } setTimeout(tick, every); })
        .catch(function () { setTimeout(tick, every * 2); });
    };
    setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".graph[data-graph]").forEach(drawGraph);
    var details = island("state-details");
    var remembered = null;
    try { remembered = sessionStorage.getItem("stepwise-state:" + location.pathname); } catch (e) { /* ignore */ }
    if (details && remembered) { showState(details, remembered); }
    var rows = document.getElementById("execution-rows");
    if (rows) {
      poll(rows.getAttribute("data-live"), 2000, function (html) {
        // Rows come from the server already escaped.
        if (rows.innerHTML !== html) { rows.innerHTML = html; }
      });
    }
    var live = document.getElementById("live");
    if (live && live.getAttribute("data-status") === "RUNNING") {
      poll(live.getAttribute("data-version"), 1500, function (text) {
        var now = JSON.parse(text);
        if (now.status !== live.getAttribute("data-status") ||
            String(now.lastEventId) !== live.getAttribute("data-last-event")) {
          location.reload();
          return false;
        }
        return true;
      });
    }
  });
}());
