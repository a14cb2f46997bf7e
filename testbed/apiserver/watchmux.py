"""One thread that writes every watch stream of the unix-socket API server (see
:class:`WatchMux`)."""

from __future__ import annotations

import logging
import selectors
import socket
import threading
import time

from .watchlist import BookmarkTimer

log = logging.getLogger("testbed.apiserver.server")


class _Entry:
    __slots__ = ("w", "conn", "deadline", "buf", "ending", "mask", "done", "marks")

    def __init__(self, w, conn: socket.socket, deadline: float | None, bookmarks: bool):
        self.w, self.conn, self.deadline = w, conn, deadline
        self.marks = BookmarkTimer(w, deadline, time.monotonic()) if bookmarks else None
        self.buf = bytearray()
        self.ending = False  # the terminating chunk is queued; finish once flushed
        self.mask = 0
        self.done = threading.Event()


class WatchMux:
    """One thread that writes every watch stream: when a watch has events (the store calls
    the watch's listener) the events are encoded once and sent with non-blocking writes, so a
    change reaches dozens of watchers without waking dozens of threads. The same select()
    notices clients that disconnect (their socket becomes readable at EOF) and
    ``timeoutSeconds`` deadlines, and its timeout sends the periodic bookmarks of watches that
    allow them. A client more than ``max_buffer`` bytes behind is dropped.
    The request thread that started a watch waits until the mux is done with its socket."""

    def __init__(self, max_buffer: int = 64 << 20):
        self.max_buffer = max_buffer
        self._sel = selectors.DefaultSelector()
        self._rd, self._wr = socket.socketpair()
        self._rd.setblocking(False)
        self._wr.setblocking(False)
        self._sel.register(self._rd, selectors.EVENT_READ, None)
        self._mu = threading.Lock()
        self._new: list[_Entry] = []
        self._ready: set = set()
        self._signaled = False
        self._closing = False
        self._entries: dict = {}
        self._thread = threading.Thread(target=self._run, name="apiserver-watch-mux", daemon=True)
        self._thread.start()

    # -- called from other threads ----------------------------------------------------------
    def add(self, w, conn: socket.socket, deadline: float | None, bookmarks: bool = False) -> threading.Event:
        e = _Entry(w, conn, deadline, bookmarks)
        with self._mu:
            if self._closing:
                e.done.set()
                w.stop()
                return e.done
            self._new.append(e)
        self._wake()
        return e.done

    def _notify(self, w) -> None:
        with self._mu:
            self._ready.add(w)
            if self._signaled:
                return
            self._signaled = True
        self._wake()

    def _wake(self) -> None:
        try:
            self._wr.send(b"x")
        except OSError:
            pass

    def close(self) -> None:
        with self._mu:
            self._closing = True
        self._wake()
        self._thread.join(timeout=10)

    # -- the mux thread ---------------------------------------------------------------------
    def _set_mask(self, e: _Entry, mask: int) -> None:
        if mask == e.mask:
            return
        try:
            if e.mask == 0:
                self._sel.register(e.conn, mask, e)
            elif mask == 0:
                self._sel.unregister(e.conn)
            else:
                self._sel.modify(e.conn, mask, e)
        except (OSError, ValueError, KeyError):
            pass
        e.mask = mask

    def _finish(self, e: _Entry) -> None:
        self._set_mask(e, 0)
        self._entries.pop(e.w, None)
        e.w.stop()
        try:
            e.conn.setblocking(True)
        except OSError:
            pass
        e.done.set()

    def _flush(self, e: _Entry) -> None:
        while e.buf:
            try:
                n = e.conn.send(e.buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._finish(e)
                return
            del e.buf[:n]
        if not e.buf and e.ending:
            self._finish(e)
        elif len(e.buf) > self.max_buffer:
            log.warning("dropping a watch of %s: the client is %d bytes behind", e.w.kind, len(e.buf))
            self._finish(e)
        else:
            self._set_mask(e, (e.mask & selectors.EVENT_READ) | (selectors.EVENT_WRITE if e.buf else 0))

    def _end(self, e: _Entry) -> None:
        if not e.ending:
            e.ending = True
            e.marks = None
            e.w.stop()
            e.buf += b"0\r\n\r\n"
        self._flush(e)

    def _pump(self, e: _Entry) -> None:
        if e.ending:
            return
        batch = e.w.get_raw_batch(0, 4096)
        if e.marks is not None:
            batch += e.marks.due(time.monotonic())
        if batch:
            data = b"".join(ev.encoded() for ev in batch)
            e.buf += b"%x\r\n" % len(data)
            e.buf += data
            e.buf += b"\r\n"
        if e.w.closed:
            self._end(e)
        else:
            self._flush(e)

    @staticmethod
    def _peer_closed(e: _Entry) -> bool:
        try:
            return e.conn.recv(1, socket.MSG_PEEK) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def _run(self) -> None:
        while True:
            timeout = None
            deadlines = [t for e in self._entries.values()
                         for t in (e.deadline, e.marks and e.marks.at) if t is not None]
            if deadlines:
                timeout = max(0.0, min(deadlines) - time.monotonic())
            for key, mask in self._sel.select(timeout):
                e = key.data
                if e is None:
                    try:
                        while self._rd.recv(4096):
                            pass
                    except OSError:
                        pass
                    continue
                if self._entries.get(e.w) is not e:
                    continue
                if mask & selectors.EVENT_READ:
                    if self._peer_closed(e):
                        self._finish(e)
                        continue
                    # unexpected data from the client: stop watching for reads (level-triggered)
                    self._set_mask(e, e.mask & ~selectors.EVENT_READ)
                if mask & selectors.EVENT_WRITE:
                    self._flush(e)
            with self._mu:
                new, self._new = self._new, []
                ready, self._ready = self._ready, set()
                self._signaled = False
                closing = self._closing
            for e in new:
                try:
                    e.conn.setblocking(False)
                except OSError:
                    e.w.stop()
                    e.done.set()
                    continue
                self._entries[e.w] = e
                self._set_mask(e, selectors.EVENT_READ)
                ready.add(e.w)
                e.w.set_listener(self._notify)
            now = time.monotonic()
            ready.update(e.w for e in self._entries.values()
                         if e.marks is not None and e.marks.at is not None and e.marks.at <= now)
            for w in ready:
                e = self._entries.get(w)
                if e is not None:
                    self._pump(e)
            for e in [e for e in self._entries.values() if e.deadline is not None and e.deadline <= now]:
                e.deadline = None
                self._end(e)
            if closing:
                for e in list(self._entries.values()):
                    self._finish(e)
                self._sel.close()
                self._rd.close()
                self._wr.close()
                return
