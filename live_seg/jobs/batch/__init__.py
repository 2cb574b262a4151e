"""Many videos in one run: inputs expanded and mapped under the output folder, the JSONL manifest
(resume), progress bars, the per-file callable with one model per process, and the Ray runner (the
only module importing ``ray``).

May import: every layer below ``live_seg.jobs``, and ``live_seg.jobs.video``.
"""
