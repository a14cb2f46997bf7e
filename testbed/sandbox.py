"""A container's sandbox, made as runc/crun make one, from the kernel's interfaces via ctypes.

    python -m testbed.sandbox run SPEC.json [--netns PATH] [--sync-fd FD] -- ARGV...  (per container)
    python -m testbed.sandbox enter SPEC.json PID -- ARGV...  (exec into a running one)

``run`` joins the container's cgroup before anything else (so whatever it forks is the pod's),
then unshares mount, UTS, IPC and PID namespaces (the network namespace is the pod's, entered by
the thread that forked it) and forks the namespace's PID 1. That init makes every host mount a
slave (nothing it mounts propagates back), bind-mounts the pod's ``/etc/hosts``,
``/etc/resolv.conf`` and ``/etc/hostname``, mounts a ``/proc`` of its own PID namespace, hides the
testbed's state directory (API socket, store, logs) and ``/run/netns`` under empty tmpfs, bind-mounts
back only what the spec's ``binds`` name (the API socket for a built-in that is an API client), sets
the hostname, and forks the program with the capability bounding set, user, group and umask of
the spec. Init forwards signals to the program, reaps orphans, and exits with its status; the
kernel then kills whatever else is left in the PID namespace. The outer process relays signals to
init and its exit status to the kubelet, which watches it through a pidfd.

``enter`` (``testbed exec pod/...`` and exec probes) joins the same cgroup and namespaces of a
running container and runs a command with the same credentials, as ``runc exec`` does.

The spec is pure data, built by ``kubelet.plan.sandbox_spec``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import sys
import warnings  # noqa: F401 - os.execvpe imports it lazily, after the switch to a user who may not read the stdlib

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = \
    0x00020000, 0x04000000, 0x08000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_RDONLY = 2, 4, 8, 1
MS_BIND, MS_REC, MS_PRIVATE, MS_SLAVE = 0x1000, 0x4000, 1 << 18, 1 << 19
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NAME = 1, 24, 15
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGWINCH)
# the order in which an existing container's namespaces are joined: mnt last, since after it
# the /proc of the caller is no longer the one the descriptors were opened from
ENTER_ORDER = (("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS), ("net", CLONE_NEWNET), ("pid", CLONE_NEWPID),
               ("mnt", CLONE_NEWNS))

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None, flags,
                       data.encode() if data else None), f"mount {src or fstype} on {dst}")


def _attach_cgroup(cg: str) -> None:
    fd = os.open(os.path.join(cg, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"0")
    finally:
        os.close(fd)


def last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def _credentials(spec: dict) -> None:
    """Drop every capability outside the spec's set from the bounding set, then become the spec's
    user: root's capabilities after exec are its bounding set; another user's are none."""
    keep = set(spec.get("capabilities", []))
    for cap in range(last_cap() + 1):
        if cap not in keep:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    uid, gid = spec.get("uid"), spec.get("gid")
    if gid is not None or uid is not None:
        gid = gid if gid is not None else 0
        os.setgroups([gid] + [g for g in spec.get("groups", []) if g != gid])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    os.umask(spec.get("umask", 0o022))


def _exec_program(argv: list[str], spec: dict, sync_fd: int | None = None) -> None:
    """In the forked child: become the program (never returns). ``sync_fd`` closes on a
    successful exec; a failure is written to it, so the kubelet learns either way."""
    if sync_fd is not None:
        os.set_inheritable(sync_fd, False)
    try:
        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()
        _credentials(spec)
        # after the credentials change, which clears it: an entered command dies with its caller
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if spec.get("cwd"):
            os.chdir(spec["cwd"])
        os.execvpe(argv[0], argv, os.environ)
    except OSError as exc:
        _fail(f"cannot run {argv[0]!r}: {exc.strerror or exc}", sync_fd, 127 if exc.errno == errno.ENOENT else 126)
    except BaseException as exc:  # noqa: BLE001 - a child must never return into the caller
        _fail(str(exc), sync_fd, 126)


def _fail(message: str, sync_fd: int | None, code: int) -> None:
    for fd in (2, sync_fd):
        if fd is not None:
            try:
                os.write(fd, f"testbed sandbox: {message}\n".encode())
            except OSError:
                pass
    os._exit(code)


def _status(st: int) -> int:
    """An exit status as init passes it on: the code, or 128 + the signal that ended the program."""
    return os.waitstatus_to_exitcode(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)


def _supervise(child: int, reap_all: bool) -> int:
    """Forward signals to ``child`` and wait for it (as init: reaping every orphan too)."""
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _forward(child, s))
    while True:
        try:
            pid, st = os.waitpid(-1 if reap_all else child, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child:
            return _status(st)


def _forward(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _init(spec: dict, argv: list[str], sync_fd: int | None) -> int:
    """PID 1 of the container's PID namespace."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the outer process is the kubelet's handle
    _mount(None, "/", None, MS_REC | MS_SLAVE)
    for dst, src in sorted(spec.get("files", {}).items()):
        if os.path.exists(dst):
            _mount(src, dst, None, MS_BIND)
    # what ``binds`` makes visible again is opened before it is hidden
    binds = [(os.open(src, os.O_PATH | os.O_CLOEXEC), dst) for src, dst in spec.get("binds", [])]
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    hidden = [d for d in spec.get("hide", []) if os.path.isdir(d)]
    for d in hidden:
        _mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=16k")
    for fd, dst in binds:
        _bind_target(fd, dst, hidden)
        _mount(f"/proc/self/fd/{fd}", dst, None, MS_BIND)
        os.close(fd)
    if spec.get("hostname"):
        name = spec["hostname"].encode()
        _check(_libc.sethostname(name, len(name)), "sethostname")
    child = os.fork()
    if child == 0:
        _exec_program(argv, spec, sync_fd)
    if sync_fd is not None:
        os.close(sync_fd)
    return _supervise(child, reap_all=True)


def _bind_target(fd: int, dst: str, hidden: list[str]) -> None:
    """Make the mount point of a bind: only inside a hidden directory's empty tmpfs (where the
    source itself was), never on the host's filesystem."""
    if os.path.lexists(dst):
        return
    if not any(dst.startswith(d.rstrip("/") + "/") for d in hidden):
        raise OSError(errno.ENOENT, f"bind mount target {dst} does not exist")
    os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        os.mkdir(dst, 0o755)
    else:
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))


def _relay(code: int) -> None:
    """Exit as the program did: by its signal when it was killed by one, so the kubelet sees it."""
    if 128 < code < 128 + signal.NSIG:
        sig = code - 128
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
        os.kill(os.getpid(), sig)
    os._exit(code)


def run(spec: dict, argv: list[str], netns: str | None = None, sync_fd: int | None = None) -> None:
    """Start the container (never returns). ``netns``: a network namespace to join first, when
    the caller is not already in the pod's; ``sync_fd``: see ``_exec_program``."""
    _attach_cgroup(spec["cgroup"])
    # the exit status, kept for a kubelet that restarted meanwhile (it is not this process's
    # parent and cannot wait for it), as a container runtime's shim keeps it; opened now,
    # before init hides the state directory it lives in
    status = os.open(spec["status"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600) \
        if spec.get("status") else None
    if netns:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
        finally:
            os.close(fd)
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID), "unshare")
    init = os.fork()
    if init == 0:
        try:
            code = _init(spec, argv, sync_fd)
        except BaseException as exc:  # noqa: BLE001
            _fail(str(exc), sync_fd, 126)
        os._exit(code)
    if sync_fd is not None:
        os.close(sync_fd)
    code = _supervise(init, reap_all=False)
    if status is not None:
        os.write(status, str(code).encode())
    _relay(code)


def init_pid(cg: str) -> int | None:
    """The PID 1 of the container whose cgroup is ``cg`` (its pid as the host sees it)."""
    try:
        with open(os.path.join(cg, "cgroup.procs")) as f:
            pids = [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("NSpid:"):
                        ids = line.split()[1:]
                        if len(ids) >= 2 and ids[-1] == "1":
                            return pid
        except OSError:
            continue
    return None


def enter(spec: dict, pid: int, argv: list[str]) -> int:
    """Run ``argv`` in the cgroup and namespaces of the container whose init is ``pid``; return
    its exit status. Standard input, output and error are the caller's."""
    fds = [(os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC), flag) for name, flag in ENTER_ORDER]
    try:
        _attach_cgroup(spec["cgroup"])
        for fd, flag in fds:
            _check(_libc.setns(fd, flag), "setns")
    finally:
        for fd, _ in fds:
            os.close(fd)
    child = os.fork()  # the PID namespace applies to children only
    if child == 0:
        os.chdir("/")
        _exec_program(argv, spec)
    return _supervise(child, reap_all=False)


def main(args: list[str]) -> None:
    usage = ("usage: python -m testbed.sandbox run SPEC.json [--netns PATH] [--sync-fd FD] -- ARGV... | "
             "enter SPEC.json PID -- ARGV...")
    if len(args) < 4 or args[0] not in ("run", "enter") or "--" not in args:
        sys.exit(usage)
    sep = args.index("--")
    with open(args[1]) as f:
        spec = json.load(f)
    if args[0] == "run":
        opts = dict(zip(args[2:sep:2], args[3:sep:2]))
        if set(opts) - {"--netns", "--sync-fd"} or (sep - 2) % 2:
            sys.exit(usage)
        sync = opts.get("--sync-fd")
        run(spec, args[sep + 1:], opts.get("--netns"), int(sync) if sync is not None else None)
    else:
        _relay(enter(spec, int(args[2]), args[sep + 1:]))


if __name__ == "__main__":
    main(sys.argv[1:])
