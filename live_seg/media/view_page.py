"""The page of ``live``'s browser view: the MJPEG stream and the buttons that send the window's keys."""

from __future__ import annotations

import html

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}
img{{display:block;margin:auto;max-width:100vw;max-height:calc(100vh - 44px)}}
nav{{text-align:center;padding:8px}}
</style></head>
<body>
<img id="view" src="/stream.mjpg" alt="live view">
<nav>
<button data-k=" ">pause (space)</button>
<button data-k="m">view (m)</button>
<button data-k="l">legend (l)</button>
<button data-k="e">effect (e)</button>
<button data-k="s">snapshot (s)</button>
<button data-k="t">next tile (t)</button>
<button data-k="0">all tiles (0)</button>
</nav>
<script>
const send = k => fetch("/key", {{method: "POST", body: k}});
for (const b of document.querySelectorAll("button")) b.onclick = () => send(b.dataset.k);
document.onkeydown = e => {{ if (" mels0123456789t".includes(e.key)) {{ send(e.key); e.preventDefault(); }} }};
</script>
</body></html>
"""

PAGE_KEYS = frozenset(" mels0123456789t")
"""Keys the browser page may send (never quit: stop the tool where it runs); with several sources,
1-9 select a tile, 0 all tiles, t the next one (keys then act on the selected tile)."""


def view_page(title: str) -> str:
    """The page's HTML, titled ``title`` (escaped)."""
    return _PAGE.format(title=html.escape(title))
