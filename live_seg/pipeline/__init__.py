"""Threads that always stop: the stop control, bounded queues, stages and their shutdown, the inference
loop every job shares, the file run, the multi-source inference thread with its newest-frame slots
(``multiplex``), the stream engine behind every live front-end (``engine``) and the sinks' threads
(``sinks``). Written against small Protocols, so it imports no model,
source or writer.

May import: ``live_seg.base``.
"""
