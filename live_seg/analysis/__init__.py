"""What a run learns beyond the painted picture: temporal smoothing and the flicker meter, mask files
(PNGs, the lossless mask video), class coverage, and their wiring into a run.

May import: ``live_seg.base``, ``live_seg.render``, ``live_seg.media``.
"""
