"""Threads that always stop: the stop control, bounded queues, stages and their shutdown, the inference
loop every job shares, the file run, the multi-source inference thread with its newest-frame slots
(``multiplex``) and the live run (``live_run``). Written against small Protocols, so it imports no model,
source or writer.

May import: ``live_seg.base``.
"""
