"""Wait for files in a directory to change (inotify via libc; no polling).

Used to wait on the kube-proxies' metrics files, which are replaced atomically after each sync.
"""

from __future__ import annotations

import ctypes
import os
import select

IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x2, 0x8, 0x80, 0x100, 0x200

_libc = ctypes.CDLL(None, use_errno=True)


class DirWatch:
    """``wait(timeout)`` returns when a file in ``directory`` was created, written or replaced."""

    def __init__(self, directory: str, mask: int = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE):
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self.fd, directory.encode(), mask) < 0:
            err = ctypes.get_errno()
            os.close(self.fd)
            raise OSError(err, f"inotify_add_watch {directory}")

    def wait(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if ready:
            try:
                os.read(self.fd, 65536)
            except BlockingIOError:
                pass
        return bool(ready)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> DirWatch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
