"""The head of an HTTP/1.x request (request line and headers) for the API server's handler,
read as ``http.server`` reads it but without parsing the headers through the ``email`` package
(a tenth of the API server's CPU while a burst of pods was created)."""

from __future__ import annotations

from http import HTTPStatus

MAX_HEADER_LINE, MAX_HEADERS = 65536, 100  # the standard library's limits


class Headers:
    """A request's headers, by case-insensitive name: what the handlers use of the standard
    library's ``email.message.Message`` (``get`` gives the first value, ``get_all`` every one)."""

    __slots__ = ("_items", "_by_name")

    def __init__(self, items: list[tuple[str, str]]):
        self._items = items
        self._by_name: dict[str, list[str]] = {}
        for k, v in items:
            self._by_name.setdefault(k.lower(), []).append(v)

    @classmethod
    def parse(cls, lines: list[bytes]) -> "Headers":
        items: list[tuple[str, str]] = []
        for raw in lines:
            line = raw.decode("iso-8859-1").rstrip("\r\n")
            if line[:1] in (" ", "\t") and items:  # an obsolete folded continuation
                k, v = items[-1]
                items[-1] = (k, f"{v} {line.strip()}")
                continue
            k, sep, v = line.partition(":")
            if sep:
                items.append((k.strip(), v.strip()))
        return cls(items)

    def get(self, name: str, default=None):
        vs = self._by_name.get(name.lower())
        return vs[0] if vs else default

    __getitem__ = get

    def get_all(self, name: str, default=None):
        vs = self._by_name.get(name.lower())
        return list(vs) if vs else default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._by_name

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [k for k, _ in self._items]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)


def parse_request(handler) -> bool:
    """``BaseHTTPRequestHandler.parse_request`` for ``handler``: the request line and
    headers as the standard library reads them, with the headers in a :class:`Headers`; False,
    with an error sent, for a malformed request."""
    handler.command = None
    handler.request_version = handler.default_request_version
    handler.close_connection = True
    handler.requestline = requestline = str(handler.raw_requestline, "iso-8859-1").rstrip("\r\n")
    words = requestline.split()
    if len(words) != 3:
        handler.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
        return False
    command, path, version = words
    try:
        if not version.startswith("HTTP/"):
            raise ValueError
        major, minor = (int(x) for x in version[5:].split(".", 1))
    except ValueError:
        handler.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
        return False
    if major >= 2:
        handler.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version})")
        return False
    handler.command, handler.request_version = command, version
    handler.path = "/" + path.lstrip("/") if path.startswith("//") else path
    handler.close_connection = (major, minor) < (1, 1)
    lines = []
    while True:
        line = handler.rfile.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            handler.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
            return False
        if line in (b"\r\n", b"\n", b""):
            break
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            handler.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
    handler.headers = Headers.parse(lines)
    conntype = (handler.headers.get("Connection") or "").lower()
    if conntype == "close":
        handler.close_connection = True
    elif conntype == "keep-alive":  # this server speaks HTTP/1.1, whatever the client said
        handler.close_connection = False
    if (handler.headers.get("Expect") or "").lower() == "100-continue" and (major, minor) >= (1, 1):
        return handler.handle_expect_100()
    return True
