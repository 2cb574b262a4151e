"""The bottom layer: names the user can choose (the registry, torch-free), frame and mask types
and their validators, the error hierarchy, run statistics, files written through a temporary name,
and the option values every job takes.

May import: numpy and the standard library only (nothing else of ``live_seg``).
"""
