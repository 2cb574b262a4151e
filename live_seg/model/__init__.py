"""Networks and their runtimes: runtime selection (``build_segmenter``), the torch ``Segmenter``, the
OpenVINO runtime and its converter, weights, the torch-free identity of a network (description, cache
key) and the tensor operations of the GPU path.

May import: ``live_seg.base``.
"""
