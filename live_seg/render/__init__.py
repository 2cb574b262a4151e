"""Drawing: palettes and colouring, text boxes, the live HUD, effects on chosen classes, their
backgrounds, and the renderer that blends a mask over a frame.

May import: ``live_seg.base``.
"""
