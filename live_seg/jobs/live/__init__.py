"""The live job: the session that wires a camera, the model and the view; the view loop (HUD, keys,
snapshots, recording) and the live counters.

May import: every layer below ``live_seg.jobs``.
"""
