"""The ``pods/log`` subresource: a container's output as the kubelet wrote it
(``container``, ``tailLines``, ``follow``; ``previous``: the instance before the last
restart, whose log the kubelet keeps beside the current one)."""

from __future__ import annotations

import os
import select
from typing import Callable, Iterator

from ..inotify import IN_CREATE, IN_MODIFY, DirWatch
from ..kubelet.plan import previous_log
from .errors import BadRequest

LogPath = Callable[[str, str, str], str]  # (namespace, pod, container) -> file


def container_of(pod: dict, container: str | None) -> str:
    """The container a log request means, with upstream's messages when it is ambiguous or unknown."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    names = [c.get("name") for c in spec.get("containers") or []]
    if container is None:
        if len(names) != 1:
            raise BadRequest(f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]")
        return names[0]
    if container not in names + [c.get("name") for c in spec.get("initContainers") or []]:
        raise BadRequest(f"container {container} is not valid for pod {name}")
    return container


def previous_not_found(pod: dict, container: str) -> BadRequest:
    return BadRequest(f'previous terminated container "{container}" in pod "{pod["metadata"]["name"]}" not found')


def read_previous(pod: dict, container: str, path: str, tail_lines: int | None) -> bytes:
    """The previous instance's log, or upstream's error when the container never restarted."""
    try:
        with open(previous_log(path), "rb") as f:
            return tail(f.read(), tail_lines)
    except FileNotFoundError:
        raise previous_not_found(pod, container) from None


def tail(data: bytes, lines: int | None) -> bytes:
    """The last *lines* lines of *data* (all of it for None)."""
    if lines is None:
        return data
    if lines <= 0:
        return b""
    parts = data.split(b"\n")
    if parts and parts[-1] == b"":
        parts.pop()
    return b"".join(p + b"\n" for p in parts[-lines:])


def read(path: str, tail_lines: int | None) -> bytes:
    try:
        with open(path, "rb") as f:
            return tail(f.read(), tail_lines)
    except FileNotFoundError:
        return b""


def follow(path: str, tail_lines: int | None, peer, stopping: Callable[[], bool]) -> Iterator[bytes]:
    """The log, then what is appended to it, until the client goes away (its socket turns
    readable: it sends nothing while it follows) or the server stops; woken by inotify."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with DirWatch(os.path.dirname(path), IN_CREATE | IN_MODIFY) as watch:
        first = True
        offset = 0
        while not stopping():
            if os.path.exists(path):
                with open(path, "rb") as f:
                    if first:
                        data = f.read()
                        offset = len(data)
                        first = False
                        if data:
                            yield tail(data, tail_lines)
                    else:
                        f.seek(offset)
                        data = f.read()
                        offset += len(data)
                        if data:
                            yield data
            if select.select([peer], [], [], 0)[0]:
                return
            watch.wait(1.0)
