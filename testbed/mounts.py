"""mount(2) and umount2(2) through libc (no fork of mount(8)), for the few mounts the testbed
makes in the host's mount namespace: each on a path the cluster owns, named after it."""

from __future__ import annotations

import ctypes
import errno
import os

MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def tmpfs(target: str, source: str, options: str) -> None:
    """Mount a tmpfs named ``source`` (what ``findmnt`` shows) on ``target``: nosuid, nodev."""
    if _libc.mount(source.encode(), target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount -t tmpfs {source} {target}: {os.strerror(err)}")


def unmount_all(target: str) -> int:
    """Detach whatever is mounted on ``target`` (stacked mounts too); how many were."""
    n = 0
    while os.path.ismount(target):
        if _libc.umount2(target.encode(), MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                break
            raise OSError(err, f"umount {target}: {os.strerror(err)}")
        n += 1
    return n
