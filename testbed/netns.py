"""Named network namespaces without forking.

``ip netns add`` forks and so do pyroute2's helpers; at 1,000 pods that is the whole budget.
Here a namespace is created with ``unshare(CLONE_NEWNET)`` in a worker thread and bind-mounted
on ``/run/netns/<name>`` exactly as iproute2 does, so ``ip netns`` sees it.  Work inside a
namespace runs in a thread that has ``setns()`` into it; namespaces are per thread in Linux, so
the main thread never leaves the root namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 0x1000, 0x4000, 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
AT_EMPTY_PATH = 0x1000

_ROOT_FD: int | None = None
_run_dir_ready = False
_lock = threading.Lock()
# the unnamed inode every namespace file this process makes is a name of (see _make_file), and
# a descriptor of /run/netns to link it in; None until the first, False if the filesystem can't
_anchor: int | None | bool = None
_run_dir_fd: int | None = None


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def root_fd() -> int:
    """A descriptor of the network namespace the process started in (the root namespace)."""
    global _ROOT_FD
    with _lock:
        if _ROOT_FD is None:
            _ROOT_FD = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        return _ROOT_FD


def path(name: str) -> str:
    return os.path.join(RUN_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(path(name))


def list_names(prefix: str = "") -> list[str]:
    try:
        return sorted(n for n in os.listdir(RUN_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def _ensure_run_dir() -> None:
    """Make /run/netns a shared mount point, as ``ip netns add`` does, once per process."""
    global _run_dir_ready
    with _lock:
        if _run_dir_ready:
            return
        os.makedirs(RUN_DIR, mode=0o755, exist_ok=True)
        d = RUN_DIR.encode()
        if _libc.mount(b"none", d, None, MS_SHARED | MS_REC, None) != 0:
            if ctypes.get_errno() != errno.EINVAL:
                _check(-1, f"mount --make-shared {RUN_DIR}")
            _check(_libc.mount(d, d, b"none", MS_BIND | MS_REC, None), f"mount --bind {RUN_DIR}")
            _check(_libc.mount(b"none", d, None, MS_SHARED | MS_REC, None), f"mount --make-shared {RUN_DIR}")
        _run_dir_ready = True


def create_here(name: str) -> None:
    """Create namespace ``name`` and move the *calling thread* into it.

    Call only from a worker thread (see ``Runner``); the thread must be moved back with
    ``enter_root()`` when done.
    """
    if threading.current_thread() is threading.main_thread():
        raise RuntimeError("namespaces are entered from worker threads only")
    _ensure_run_dir()
    p = path(name)
    _make_file(name)
    try:
        _check(_libc.unshare(CLONE_NEWNET), f"unshare netns {name}")
        _check(_libc.mount(b"/proc/thread-self/ns/net", p.encode(), b"none", MS_BIND, None),
               f"bind-mount netns {name}")
    except BaseException:
        enter_root()
        with contextlib.suppress(OSError):
            os.unlink(p)
        raise


def _make_file(name: str) -> None:
    """Create ``/run/netns/<name>``, the file a namespace is bind-mounted on (mode 0, as iproute2's;
    FileExistsError if it exists). Each is a new name (``linkat``) of one unnamed inode the process
    holds (``O_TMPFILE``), not an inode of its own: a mount point's inode is never read, and on a
    disk filesystem creating and deleting one per namespace is most of a pod's cost (ext4 without
    a journal scans every inode freed in the last seconds to minutes for each new one). A
    filesystem that cannot do this gets a file per namespace, as before."""
    global _anchor, _run_dir_fd
    with _lock:
        for _ in range(2):
            if _anchor is False:
                break
            if _anchor is None:
                try:
                    _run_dir_fd = _run_dir_fd or os.open(RUN_DIR, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    _anchor = os.open(RUN_DIR, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0)
                except OSError:
                    _anchor = False
                    break
            if _libc.linkat(_anchor, b"", _run_dir_fd, name.encode(), AT_EMPTY_PATH) == 0:
                return
            err = ctypes.get_errno()
            if err == errno.EEXIST:
                raise FileExistsError(err, os.strerror(err), path(name))
            # ENOENT: every name it had was removed, and the kernel links an unnamed inode only
            # until it first has a name; EMLINK: 65,000 names (ext4). Either way, another inode.
            os.close(_anchor)
            _anchor = None if err in (errno.ENOENT, errno.EMLINK) else False
    fd = os.open(path(name), os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0)
    os.close(fd)


def open_fd(name: str) -> int:
    return os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)


def enter_fd(fd: int) -> None:
    if threading.current_thread() is threading.main_thread():
        raise RuntimeError("namespaces are entered from worker threads only")
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


def enter(name: str) -> None:
    fd = open_fd(name)
    try:
        enter_fd(fd)
    finally:
        os.close(fd)


def enter_root() -> None:
    _check(_libc.setns(root_fd(), CLONE_NEWNET), "setns back to the root namespace")


def delete(name: str) -> bool:
    """Unmount and remove a named namespace; the kernel frees it when its last user is gone."""
    p = path(name)
    if not os.path.exists(p):
        return False
    if _libc.umount2(p.encode(), MNT_DETACH) != 0 and ctypes.get_errno() not in (errno.EINVAL, errno.ENOENT):
        _check(-1, f"umount {p}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(p)
    return True


def inode(name: str) -> int | None:
    try:
        return os.stat(path(name)).st_ino
    except FileNotFoundError:
        return None


class Runner:
    """A small pool of worker threads that run callables inside namespaces.

    Each job enters its namespace, runs, and always returns the thread to the root namespace.
    """

    def __init__(self, workers: int = 1):
        root_fd()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="netns")

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def submit_in(self, name: str, fn: Callable[..., T], *args, **kwargs):
        return self._pool.submit(_run_in, name, False, fn, args, kwargs)

    def submit_new(self, name: str, fn: Callable[..., T], *args, **kwargs):
        """Create namespace ``name`` and run ``fn`` inside it."""
        return self._pool.submit(_run_in, name, True, fn, args, kwargs)

    def run_in(self, name: str, fn: Callable[..., T], *args, **kwargs) -> T:
        return self.submit_in(name, fn, *args, **kwargs).result()

    def run_new(self, name: str, fn: Callable[..., T], *args, **kwargs) -> T:
        return self.submit_new(name, fn, *args, **kwargs).result()


def _run_in(name: str, new: bool, fn, args, kwargs):
    if new:
        create_here(name)
    else:
        enter(name)
    try:
        return fn(*args, **kwargs)
    finally:
        enter_root()


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run a block of a *worker* thread inside namespace ``name`` (restores the root netns)."""
    enter(name)
    try:
        yield
    finally:
        enter_root()


def run_in(name: str, fn: Callable[..., T], *args, **kwargs) -> T:
    """Run ``fn`` once inside ``name`` from a short-lived thread (for tests and one-off work)."""
    result: list = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_run_in(name, False, fn, args, kwargs))
        except BaseException as exc:  # re-raised in the caller
            error.append(exc)

    t = threading.Thread(target=target, name=f"netns:{name}")
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def write_sysctl(key: str, value: str | int) -> None:
    """Write a sysctl of the calling thread's namespace (``net.ipv4.ip_forward`` style key)."""
    with open("/proc/sys/" + (key if "/" in key else key.replace(".", "/")), "w") as f:
        f.write(str(value))


def read_sysctl(key: str) -> str:
    with open("/proc/sys/" + key.replace(".", "/")) as f:
        return f.read().strip()
