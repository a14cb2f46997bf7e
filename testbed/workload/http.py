"""A minimal HTTP/1.1 request parser and the default workload's responses (pure, no sockets).

Only what the workload needs: a request line, headers, a body framed by ``Content-Length`` or
``Transfer-Encoding: chunked``, keep-alive rules of HTTP/1.0 and 1.1, ``Expect: 100-continue``
and pipelining (several requests in one buffer).  Anything malformed becomes an ``HttpError``
whose status is answered before the connection is closed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    413: "Content Too Large", 431: "Request Header Fields Too Large", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class HttpError(Exception):
    """A request that cannot be served; answered with ``status`` and ``Connection: close``."""

    def __init__(self, status: int, message: str = ""):
        super().__init__(f"{status} {message or REASONS.get(status, '')}")
        self.status = status
        self.message = message or REASONS.get(status, "error")


@dataclass
class Request:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names; repeated ones joined by ", "
    body: bytes = b""

    @property
    def path(self) -> str:
        return split_target(self.target)[0]

    @property
    def query(self) -> str:
        return split_target(self.target)[1]

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


def split_target(target: str) -> tuple[str, str]:
    """``/p?q`` -> (``/p``, ``q``); the absolute form ``http://host/p?q`` is reduced to its path."""
    if "://" in target[:10]:
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    path, _, query = target.partition("?")
    path = path.split("#", 1)[0]
    return path or "/", query


class RequestParser:
    """Incremental parser for one connection: ``feed`` bytes, then take requests with ``next``.

    ``next()`` returns a complete ``Request`` (consuming it from the buffer) or ``None`` when
    more bytes are needed; it raises ``HttpError`` for malformed input.  After a ``None``,
    ``want_continue()`` tells whether the client waits for ``100 Continue`` before its body
    (true once per request).
    """

    __slots__ = ("buf", "_head", "_continue_sent")

    def __init__(self) -> None:
        self.buf = bytearray()
        self._head: tuple[Request, int, int | None, bool] | None = None  # req, body start, length, chunked
        self._continue_sent = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    def want_continue(self) -> bool:
        head = self._head
        if head is None or self._continue_sent:
            return False
        if head[0].headers.get("expect", "").lower() != "100-continue" or head[0].version != "HTTP/1.1":
            return False
        self._continue_sent = True
        return True

    def next(self) -> Request | None:
        if self._head is None:
            head = self._parse_head()
            if head is None:
                return None
            self._head = head
        req, start, length, chunked = self._head
        buf = self.buf
        if chunked:
            decoded = _decode_chunked(buf, start)
            if decoded is None:
                if len(buf) - start > MAX_BODY + MAX_HEAD:
                    raise HttpError(413)
                return None
            req.body, end = decoded
        else:
            end = start + (length or 0)
            if len(buf) < end:
                return None
            req.body = bytes(buf[start:end])
        del buf[:end]
        self._head = None
        self._continue_sent = False
        return req

    def _parse_head(self) -> tuple[Request, int, int | None, bool] | None:
        buf = self.buf
        # RFC 9112 2.2: ignore empty lines before a request line
        skip = 0
        while buf.startswith(b"\r\n", skip):
            skip += 2
        while skip < len(buf) and buf[skip:skip + 1] == b"\n":
            skip += 1
        if skip:
            del buf[:skip]
        end = buf.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end = buf.find(b"\n\n")
            sep = 2
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise HttpError(431)
            return None
        if end > MAX_HEAD:
            raise HttpError(431)
        try:
            text = bytes(buf[:end]).decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes everything
            raise HttpError(400) from None
        lines = text.replace("\r\n", "\n").split("\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise HttpError(400, "malformed request line")
        method, target, version = parts
        if not method.isalpha() or not method.isupper():
            raise HttpError(400, "malformed method")
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            if version.startswith("HTTP/"):
                raise HttpError(505)
            raise HttpError(400, "malformed version")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or " " in name or "\t" in name:
                raise HttpError(400, "malformed header")
            name = name.lower()
            value = value.strip(" \t")
            if name in headers:
                headers[name] = headers[name] + ", " + value
            else:
                headers[name] = value
        req = Request(method, target, version, headers)
        start = end + sep
        te = headers.get("transfer-encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise HttpError(501, "unsupported transfer-encoding")
            return req, start, None, True
        cl = headers.get("content-length")
        length = 0
        if cl is not None:
            values = {v.strip() for v in cl.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise HttpError(400, "bad content-length")
            length = int(next(iter(values)))
            if length > MAX_BODY:
                raise HttpError(413)
        return req, start, length, False


def _decode_chunked(buf: bytearray, pos: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``pos``: (body, end offset) or None if incomplete."""
    body = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            if len(buf) - pos > 1024:
                raise HttpError(400, "bad chunk size")
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(400, "bad chunk size") from None
        if size < 0:
            raise HttpError(400, "bad chunk size")
        pos = eol + 2
        if size == 0:
            # trailers until an empty line
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return bytes(body), eol + 2
                pos = eol + 2
        if len(body) + size > MAX_BODY:
            raise HttpError(413)
        if len(buf) < pos + size + 2:
            return None
        body += buf[pos:pos + size]
        if buf[pos + size:pos + size + 2] != b"\r\n":
            raise HttpError(400, "bad chunk")
        pos += size + 2


def response(status: int, body: bytes, *, content_type: str = TEXT, keep_alive: bool = True,
             head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


def error_response(err: HttpError) -> bytes:
    return response(err.status, (err.message + "\n").encode(), keep_alive=False)


@dataclass
class PodContext:
    """What a response may mention about the serving pod and the connection."""

    hostname: str
    version: str
    ready: bool
    client: str  # "IP:PORT" of the peer as the pod's socket saw it
    server: str  # "IP:PORT" the connection arrived on (after DNAT)
    mode: str = "default"


MODES = ("default", "echo")
ECHO_IMAGE = "registry.k8s.io/echoserver"


def workload_mode(image: str | None) -> str:
    """The workload mode a container image asks for: ``echo`` for ingress tutorials'
    ``registry.k8s.io/echoserver`` (any tag or digest), ``default`` for everything else."""
    name = (image or "").split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    return "echo" if name == ECHO_IMAGE else "default"


def echo(req: Request, ctx: PodContext) -> tuple[int, bytes, str]:
    """What the echoserver image answers: the request itself, as seen by the pod."""
    client_ip, _, client_port = ctx.client.rpartition(":")
    doc = {
        "hostname": ctx.hostname,
        "path": req.path,
        "query": req.query,
        "method": req.method,
        "httpVersion": req.version,
        "headers": req.headers,
        "clientip": client_ip,
        "clientport": client_port,
        "serverAddr": ctx.server,
        "body": req.body.decode("utf-8", errors="replace"),
    }
    return 200, json.dumps(doc, separators=(",", ":"), sort_keys=True).encode() + b"\n", JSON


def handle(req: Request, ctx: PodContext) -> tuple[int, bytes, str]:
    """(status, body, content type) of the workload for one request."""
    if ctx.mode == "echo":
        return echo(req, ctx)
    path = req.path
    if path == "/hostname":
        return 200, ctx.hostname.encode(), TEXT
    if path == "/clientip":
        return 200, ctx.client.encode(), TEXT
    if path == "/echo":
        return 200, req.body if req.body else req.query.encode("latin-1"), TEXT
    if path == "/healthz":
        return 200, b"ok", TEXT
    if path == "/readyz":
        return (200, b"ok", TEXT) if ctx.ready else (503, b"not ready", TEXT)
    if path == "/version":
        return 200, ctx.version.encode(), TEXT
    if path == "/":
        doc = {"hostname": ctx.hostname, "clientip": ctx.client, "version": ctx.version, "serverAddr": ctx.server}
        return 200, json.dumps(doc, separators=(",", ":")).encode() + b"\n", JSON
    return 404, b"404 page not found\n", TEXT


def serve_request(req: Request, ctx: PodContext) -> tuple[bytes, bool]:
    """The full response bytes for ``req`` and whether the connection stays open."""
    status, body, ctype = handle(req, ctx)
    keep = req.keep_alive
    return response(status, body, content_type=ctype, keep_alive=keep, head_only=req.method == "HEAD"), keep


def udp_reply(data: bytes, hostname: str, version: str, client: str) -> bytes:
    """The UDP answer: ``hostname``/``clientip``/``version`` commands, anything else echoed."""
    cmd = data.strip()
    if cmd == b"hostname":
        return hostname.encode()
    if cmd == b"clientip":
        return client.encode()
    if cmd == b"version":
        return version.encode()
    return data
