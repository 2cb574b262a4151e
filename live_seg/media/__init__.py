"""Pictures in and out: file sources (PyAV), cameras and network streams (OpenCV, reconnect), output
formats, the video writer, the preview window and the browser view.

May import: ``live_seg.base``.
"""
