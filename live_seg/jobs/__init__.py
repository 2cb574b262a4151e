"""The jobs a user runs: ``video`` (file to file), ``image``, ``live/`` (cameras and streams),
``batch/`` (many files, resumable, locally or on Ray) and ``bench/`` (speed per device).

May import: every layer below it (``base``, ``model``, ``media``, ``render``, ``pipeline``, ``analysis``).
"""
