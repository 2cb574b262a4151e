"""Threads that always stop: the stop control, bounded queues, stages and their shutdown, the inference
loop every job shares, and the file run. Written against small Protocols, so it imports no model,
source or writer.

May import: ``live_seg.base``.
"""
