"""The phone's route page: what a scanned QR code opens in any browser. A static page and one
script; the script reads the link's own parameters, asks ``/v1/route`` and draws each level the
route crosses as SVG (plan, route, you-are-here, destination) with the steps. No framework, no
third-party requests, no storage: the link identifies nobody."""

PAGE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Your way</title>
<style>
body{margin:0;font:16px/1.4 system-ui,sans-serif;background:#f4f1ea;color:#1d3557}
header{background:#1d3557;color:#fff;padding:14px 16px}
h1{font-size:20px;margin:0} #meta{opacity:.85;font-size:14px;margin-top:4px}
main{padding:12px 16px} .level{margin:12px 0} .level h2{font-size:15px;margin:0 0 6px}
svg{width:100%;height:auto;background:#dfe7ec;border-radius:8px}
ol{padding-left:22px} li{margin:6px 0} .gone{padding:24px 16px}
</style></head>
<body data-state="{{expired}}">
<header><h1 id="title">Your way</h1><div id="meta"></div></header>
<main id="main"><p id="status">Finding your way...</p><div id="levels"></div><ol id="steps"></ol></main>
<script src="/w.js"></script>
</body></html>
"""

PAGE_JS = r"""
(function () {
  var q = new URLSearchParams(location.search);
  var lang = q.get("l") === "de" ? "de" : "en";
  var T = {
    en: {expired: "This link has expired. Scan the code on the screen again.",
         none: "We cannot show this way: ", walk: " walk", level: "Level "},
    de: {expired: "Dieser Link ist abgelaufen. Scannen Sie den Code erneut.",
         none: "Wir können diesen Weg nicht zeigen: ", walk: " zu Fuß", level: "Ebene "}
  }[lang];
  var status = document.getElementById("status");
  if (document.body.dataset.state === "expired") { status.textContent = T.expired; return; }
  var url = "/v1/route?from=" + encodeURIComponent(q.get("f") || "") +
            "&to=" + encodeURIComponent(q.get("t") || "") + "&lang=" + lang;
  fetch(url).then(function (r) { return r.json().then(function (b) { return [r.ok, b]; }); })
    .then(function (res) {
      var ok = res[0], b = res[1];
      if (!ok) { status.textContent = T.none + (b.error || ""); return; }
      status.textContent = "";
      document.getElementById("title").textContent = b.to.name;
      var min = Math.max(1, Math.round(b.walking_time_s / 60));
      document.getElementById("meta").textContent =
        Math.round(b.distance_m) + " m \u00b7 " + min + " min" + T.walk;
      if (b.drawing) draw(b.drawing);
      var ol = document.getElementById("steps");
      b.steps.forEach(function (s) {
        var li = document.createElement("li"); li.textContent = s.text; ol.appendChild(li);
      });
    })
    .catch(function () { status.textContent = T.none + "network"; });

  var FILL = {floor: "#f4f1ea", room: "#d9d4c7", shelf: "#b9b2a3", counter: "#a8b8c4",
              connector: "#c9d6df"};
  function draw(w) {
    var box = document.getElementById("levels");
    w.levels.forEach(function (lv) {
      var pts = [];
      lv.shapes.forEach(function (s) { pts = pts.concat(s.ring); });
      pts = pts.concat(lv.route);
      var xs = pts.map(function (p) { return p[0]; }), ys = pts.map(function (p) { return p[1]; });
      var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs);
      var y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
      var pad = 1, W = (x1 - x0) + 2 * pad, H = (y1 - y0) + 2 * pad;
      function P(p) { return [(p[0] - x0 + pad).toFixed(2), (y1 - p[1] + pad).toFixed(2)]; }
      var ns = "http://www.w3.org/2000/svg";
      var svg = document.createElementNS(ns, "svg");
      svg.setAttribute("viewBox", "0 0 " + W.toFixed(2) + " " + H.toFixed(2));
      svg.setAttribute("data-level", lv.id);
      lv.shapes.forEach(function (s) {
        var el = document.createElementNS(ns, "polygon");
        el.setAttribute("points", s.ring.map(function (p) { return P(p).join(","); }).join(" "));
        el.setAttribute("fill", FILL[s.kind] || "#eee");
        el.setAttribute("stroke", "#6c757d"); el.setAttribute("stroke-width", "0.05");
        svg.appendChild(el);
      });
      var line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", lv.route.map(function (p) { return P(p).join(","); }).join(" "));
      line.setAttribute("fill", "none"); line.setAttribute("stroke", "#e63946");
      line.setAttribute("stroke-width", "0.35"); line.setAttribute("stroke-linecap", "round");
      line.setAttribute("stroke-linejoin", "round"); line.setAttribute("class", "route");
      svg.appendChild(line);
      function dot(p, colour, cls) {
        var c = document.createElementNS(ns, "circle"), q = P(p);
        c.setAttribute("cx", q[0]); c.setAttribute("cy", q[1]); c.setAttribute("r", "0.5");
        c.setAttribute("fill", colour); c.setAttribute("class", cls); svg.appendChild(c);
      }
      if (lv.id === w.here_level) dot(w.here, "#1d3557", "here");
      if (lv.id === w.destination_level) dot(w.destination, "#e63946", "destination");
      var sec = document.createElement("section"); sec.className = "level";
      var h = document.createElement("h2"); h.textContent = lv.name || (T.level + lv.id);
      sec.appendChild(h); sec.appendChild(svg); box.appendChild(sec);
    });
  }
})();
"""
