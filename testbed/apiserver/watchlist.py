"""Watch bookmarks and watch-list (``sendInitialEvents``), as upstream's API server has them.

``allowWatchBookmarks=true`` lets the server send ``BOOKMARK`` events: an object of the
watched kind carrying only ``apiVersion``, ``kind`` and ``metadata.resourceVersion``, which
tells the client every change up to that resourceVersion has been sent (so a re-watch from
it neither replays nor misses anything, and a quiet watch does not fall behind the history).
Upstream's cacher sends one about every minute and 2 s before the watch's ``timeoutSeconds``
end; so do :func:`next_bookmark` and the two writers of watch streams (the mux and the TLS
path).

``sendInitialEvents=true`` (client-go's WatchListClient, kubectl 1.37's informers) asks for
the current state as ``ADDED`` events first, then a bookmark annotated
``k8s.io/initial-events-end: "true"`` at the resourceVersion of that state, then changes.
Upstream requires ``resourceVersionMatch=NotOlderThan`` with it (validateWatchOptions);
without ``allowWatchBookmarks`` the initial events come but no end bookmark (the cacher
only sends bookmarks to watchers that allow them). ``sendInitialEvents=false`` starts
after the given resourceVersion, or from now when there is none (no initial state).
Unset keeps the legacy semantics (``""``/``"0"``: current state first, without a bookmark).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BadRequest, Invalid
from .kinds import KindInfo, kind_info
from .watch import Event, Watch

BOOKMARK = "BOOKMARK"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
NOT_OLDER_THAN = "NotOlderThan"
# upstream's cacher: bookmarkFrequency, and a bookmark this long before the watch times out
BOOKMARK_EVERY = 60.0
BOOKMARK_BEFORE_TIMEOUT = 2.0

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class WatchOptions:
    resource_version: str | None
    send_initial_events: bool | None
    allow_bookmarks: bool


def _bool(name: str, value: str | None) -> bool | None:
    """A boolean query parameter as Go's strconv.ParseBool reads it (the API server's query
    decoding), None when absent; anything else is upstream's 400."""
    if value is None:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f'invalid value for {name}: strconv.ParseBool: parsing "{value}": invalid syntax')


def watch_options(query: dict) -> WatchOptions:
    """The watch's options from the query (last value of each parameter), validated as
    upstream's validateWatchOptions: a 422 ``ListOptions.meta.k8s.io "" is invalid`` with one
    cause per problem."""
    def one(key: str) -> str | None:
        v = query.get(key)
        return v[-1] if v else None

    send = _bool("sendInitialEvents", one("sendInitialEvents"))
    allow = bool(_bool("allowWatchBookmarks", one("allowWatchBookmarks")))
    match = one("resourceVersionMatch") or ""
    problems: list[tuple[str, str, str]] = []  # (field, cause reason, message)
    if send is not None and match != NOT_OLDER_THAN:
        problems.append(("resourceVersionMatch", "FieldValueForbidden",
                         f"Forbidden: sendInitialEvents requires setting resourceVersionMatch to {NOT_OLDER_THAN}"))
    if match:
        if send is None:
            problems.append(("resourceVersionMatch", "FieldValueForbidden",
                             "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents "
                             "is provided"))
        if match != NOT_OLDER_THAN:
            problems.append(("resourceVersionMatch", "FieldValueNotSupported",
                             f'Unsupported value: "{match}": supported values: "{NOT_OLDER_THAN}"'))
        if one("continue"):
            problems.append(("resourceVersionMatch", "FieldValueForbidden",
                             "Forbidden: resourceVersionMatch is forbidden when continue is provided"))
    if problems:
        texts = [f"{f}: {m}" for f, _, m in problems]
        what = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
        raise Invalid(f'ListOptions.meta.k8s.io "" is invalid: {what}', details={
            "group": "meta.k8s.io", "kind": "ListOptions",
            "causes": [{"reason": r, "message": m, "field": f} for f, r, m in problems]})
    return WatchOptions(one("resourceVersion"), send, allow)


def bookmark(info: KindInfo, rv: int, initial_events_end: bool = False) -> Event:
    """A BOOKMARK event at *rv* for a watch of *info*'s kind."""
    meta: dict = {"resourceVersion": str(rv)}
    if initial_events_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    return Event(BOOKMARK, {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta}, None, rv)


def next_bookmark(now: float, deadline: float | None) -> float | None:
    """When the next periodic bookmark is due (monotonic seconds): a minute from *now*, or
    just before the watch's *deadline* if that comes first; None once that moment is past."""
    at = now + BOOKMARK_EVERY
    if deadline is not None:
        at = min(at, deadline - BOOKMARK_BEFORE_TIMEOUT)
    return at if at > now else None


class BookmarkTimer:
    """The periodic bookmarks of one watch stream, kept by the thread that writes it (the mux
    thread for every unix-socket watch: no timer thread per watcher)."""

    __slots__ = ("w", "info", "deadline", "at")

    def __init__(self, w: Watch, deadline: float | None, now: float):
        self.w, self.deadline = w, deadline
        self.info = kind_info(w.kind)
        self.at = next_bookmark(now, deadline)  # when the next one is due; None: no more

    def due(self, now: float) -> list[Event]:
        """``[bookmark]`` when one is due, else ``[]``. Call it right after taking the
        watch's queued events: while events remain queued it waits for them to go first."""
        if self.at is None or now < self.at:
            return []
        if self.w.ending:
            self.at = None
            return []
        rv = self.w.bookmark_rv()
        if rv is None:
            return []
        self.at = next_bookmark(now, self.deadline)
        return [bookmark(self.info, rv)]
