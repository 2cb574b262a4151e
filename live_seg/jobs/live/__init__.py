"""The live job over one or many sources: its options (``options``), the session that wires cameras,
streams, files, the model, window, browser page and recordings to the live pipeline (``session``),
the view loop with its tiles, HUD, keys and snapshots (``view``), the view's outputs and the grid
(``outputs``), the counters and summary (``stats``), and the ``live_seg.stream`` generator (``stream``).

May import: every layer below ``live_seg.jobs``.
"""
