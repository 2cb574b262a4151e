"""The preview window on this screen: whether one can open here, the window and its keys."""

from __future__ import annotations

import os
import socket
import sys

from ..base.errors import OutputError, one_line
from ..base.frames import Frame

KEY_QUIT = frozenset({ord("q"), ord("Q"), 27})
"""Keys that end a live run: q or Esc."""


def _opencv_gui() -> str:
    """The GUI backend OpenCV was built with (``"QT5"``, ``"GTK3"``, ``"NONE"``, …)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GUI":
            return value.strip() or "NONE"
    return "UNKNOWN"


def _x_display_reachable(display: str, timeout: float = 1.0) -> bool:
    """Whether the X server named by ``DISPLAY`` accepts a connection (without Xlib).

    Qt aborts the whole process when it cannot reach the display, so this is checked first.
    Unparseable values count as reachable (the GUI library gets to decide).
    """
    host, sep, rest = display.rpartition(":")
    number = rest.split(".", 1)[0]
    if not sep or not number.isdigit():
        return True
    if host in ("", "unix"):
        paths = [f"/tmp/.X11-unix/X{number}"]
        if sys.platform.startswith("linux"):
            paths.insert(0, f"\0/tmp/.X11-unix/X{number}")  # the abstract socket Xorg/Xvfb also open
        for path in paths:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                try:
                    sock.connect(path)
                    return True
                except OSError:
                    continue
        return False
    try:
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout):
            return True
    except OSError:
        return False


def display_problem() -> str | None:
    """Why no preview window can be opened here, or ``None`` when one can.

    Checks, without opening anything: an OpenCV build with a GUI, and on Linux/BSD an X
    display that answers (``DISPLAY``; OpenCV's Qt build does not speak Wayland itself, so
    ``WAYLAND_DISPLAY`` alone only counts for a GTK build).
    """
    gui = _opencv_gui().upper()
    if gui.startswith("NONE"):
        return "this OpenCV build has no GUI (opencv-python-headless?)"
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        display = os.environ.get("DISPLAY", "")
        if not display:
            if not os.environ.get("WAYLAND_DISPLAY"):
                return "no DISPLAY set"
            if "GTK" in gui:
                return None
            return "no DISPLAY set (WAYLAND_DISPLAY only, and this OpenCV GUI needs X11 or XWayland)"
        if not _x_display_reachable(display):
            return f"the X display {display} does not answer"
    return None


class PreviewWindow:
    """A resizable OpenCV window without toolbar, owned by the thread that opened it.

    Args:
        title: window title (also its OpenCV name).
        max_size: initial size limit ``(width, height)``; the window keeps the image's aspect.
    """

    def __init__(self, title: str, max_size: tuple[int, int] = (1280, 800)) -> None:
        self.title = title
        self.max_size = max_size
        self._open = False
        self._size: tuple[int, int] | None = None

    def show(self, image: Frame) -> None:
        """Show a BGR uint8 image (the window opens on the first call).

        Raises:
            OutputError: the window cannot be opened.
        """
        import cv2

        try:
            if not self._open:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
                self._open = True
            size = (image.shape[1], image.shape[0])
            if size != self._size:
                scale = min(1.0, self.max_size[0] / size[0], self.max_size[1] / size[1])
                cv2.resizeWindow(self.title, max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
                self._size = size
            cv2.imshow(self.title, image)
        except cv2.error as exc:
            raise OutputError(
                f"cannot open a preview window ({one_line(exc, limit=160)}); "
                "use --serve PORT to watch in a browser instead"
            ) from exc

    def poll(self, wait_ms: int = 1) -> int | None:
        """Let the window process events for ``wait_ms`` ms; the key pressed (low byte), if any."""
        import cv2

        if not self._open:
            return None
        key = cv2.waitKey(max(1, wait_ms))
        return None if key == -1 else key & 0xFF

    @property
    def closed_by_user(self) -> bool:
        """The user closed the window with its close button."""
        import cv2

        if not self._open:
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def close(self) -> None:
        """Destroy the window. Safe to call twice."""
        import cv2

        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass


def show_image(title: str, path: str | os.PathLike[str]) -> None:
    """Show an image file in a resizable window until a key is pressed or the window closes."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OutputError(f"cannot read back {path} to show it")
    try:
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_GUI_NORMAL)
        cv2.imshow(title, image)
        while cv2.getWindowProperty(title, cv2.WND_PROP_VISIBLE) >= 1:
            if cv2.waitKey(100) != -1:
                break
    except cv2.error as exc:
        raise OutputError(f"cannot open a window (no display?): {one_line(exc, limit=200)}") from exc
    finally:
        cv2.destroyAllWindows()
