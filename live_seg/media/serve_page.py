"""The page of ``live-seg serve``: camera out over WebRTC, the segmented stream back, controls, a readout.

The page exposes ``window.liveSeg`` (``state``, ``shown`` frames, the server's ``stats``) for tests
and scripts.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}
main{{display:flex;flex-wrap:wrap;gap:8px;justify-content:center;padding:8px}}
#view{{max-width:100vw;max-height:calc(100vh - 120px);background:#000}}
#local{{width:160px;align-self:flex-start;opacity:.8}}
nav,#readout{{text-align:center;padding:4px}}
#readout{{font-family:monospace}} .err{{color:#f66}}
</style></head>
<body>
<main><video id="view" autoplay playsinline muted></video><video id="local" autoplay playsinline muted></video></main>
<nav>
<label>effect <select id="effect"></select></label>
<label>view <select id="viewmode"></select></label>
<label><input type="checkbox" id="legend"> legend</label>
<label>classes <input id="classes" size="24" placeholder="person,dog (empty: all but background)"></label>
<button id="apply">apply</button>
</nav>
<div id="readout">starting: allow the camera</div>
<script type="application/json" id="cfg">{config}</script>
<script>
"use strict";
const cfg = JSON.parse(document.getElementById("cfg").textContent);
const $ = id => document.getElementById(id);
const state = window.liveSeg = {{state: "starting", shown: 0, stats: null, settings: null, error: null}};
for (const [id, items, value] of [["effect", cfg.effects, cfg.effect], ["viewmode", cfg.views, cfg.view]]) {{
  for (const item of items) $(id).add(new Option(item, item, false, item === value));
}}
$("legend").checked = cfg.legend;
$("classes").value = cfg.classes;
let channel = null;
const settings = () => ({{effect: $("effect").value, view: $("viewmode").value, legend: $("legend").checked,
                          classes: $("classes").value}});
const push = () => {{ if (channel && channel.readyState === "open") channel.send(JSON.stringify(settings())); }};
for (const id of ["effect", "viewmode", "legend"]) $(id).onchange = push;
$("apply").onclick = push;
$("classes").onkeydown = e => {{ if (e.key === "Enter") push(); }};

let shownAt = [];
function countShown() {{
  const v = $("view");
  const tick = () => {{ state.shown += 1; shownAt.push(performance.now()); v.requestVideoFrameCallback(tick); }};
  v.requestVideoFrameCallback(tick);
}}
function readout() {{
  const now = performance.now();
  shownAt = shownAt.filter(t => now - t < 2000);
  const s = state.stats;
  const server = s ? ` | server: ${{s.frames_received}} in, ${{s.frames_processed}} segmented, ` +
    `${{s.frames_sent}} sent | latency ${{s.latency_recent_ms ?? "-"}} ms (input to output, server)` : "";
  $("readout").textContent = `${{state.state}} | shown ${{(shownAt.length / 2).toFixed(1)}} fps${{server}}`;
  $("readout").className = state.error ? "err" : "";
  if (state.error) $("readout").textContent += ` | ${{state.error}}`;
}}
setInterval(readout, 500);

async function start() {{
  const camera = await navigator.mediaDevices.getUserMedia({{audio: false,
    video: {{width: {{ideal: 640}}, height: {{ideal: 480}}, frameRate: {{ideal: 30}}}}}});
  $("local").srcObject = camera;
  const pc = new RTCPeerConnection({{iceServers: []}});
  state.pc = pc;
  channel = pc.createDataChannel("control");
  channel.onopen = push;
  channel.onmessage = e => {{
    const msg = JSON.parse(e.data);
    if (msg.stats) state.stats = msg.stats;
    if (msg.settings) {{ state.settings = msg.settings; state.error = msg.settings.error || null; }}
    if (msg.error) state.error = msg.error;
  }};
  for (const track of camera.getVideoTracks()) pc.addTrack(track, camera);
  pc.ontrack = e => {{ $("view").srcObject = e.streams[0] || new MediaStream([e.track]); countShown(); }};
  pc.onconnectionstatechange = () => {{ state.state = pc.connectionState; }};
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(done => {{
    if (pc.iceGatheringState === "complete") return done();
    pc.onicegatheringstatechange = () => {{ if (pc.iceGatheringState === "complete") done(); }};
  }});
  const reply = await fetch("offer" + location.search, {{method: "POST",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{type: "offer", sdp: pc.localDescription.sdp}})}});
  if (!reply.ok) throw new Error(`the server refused the connection: ${{reply.status}} ${{await reply.text()}}`);
  await pc.setRemoteDescription(await reply.json());
  state.state = "connecting";
}}
start().catch(err => {{ state.state = "failed"; state.error = String(err.message || err); readout(); }});
</script>
</body></html>
"""


def serve_page(
    title: str,
    effects: Sequence[str],
    views: Sequence[str],
    *,
    effect: str,
    view: str,
    legend: bool,
    classes: str = "",
) -> str:
    """The page's HTML with its controls' choices and first values.

    Args:
        title: the page title.
        effects, views: the choices of the effect and view menus.
        effect, view, legend, classes: the first settings (the command line's).
    """
    config = {"effects": list(effects), "views": list(views), "effect": effect, "view": view, "legend": legend,
              "classes": classes}  # fmt: skip
    text = json.dumps(config).replace("<", "\\u003c")  # cannot end the script element
    return _PAGE.format(title=html.escape(title), config=text)
