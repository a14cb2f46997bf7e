"""The ``http`` check kind: one HTTP(S) request with a Host header, a path, SNI and basic-auth
credentials (what an ingress controller routes on), decided on the response's status, the pod
that answered (the echoserver's JSON body names it), selected response headers, the headers
the backend saw and the server certificate's subject."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from dataclasses import dataclass, field

from cryptography import x509

from .model import Http, HttpRequest
from .probe import Answer, SocketFactory, classify
from .resolve import Source, Target
from .timeouts import ANSWER_TIMEOUT


@dataclass
class HttpAnswer(Answer):
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    backend_headers: dict[str, str] = field(default_factory=dict)
    certificate_subject: str | None = None


def request_bytes(req: HttpRequest, ip: str, port: int) -> bytes:
    """The request as sent (pure): HTTP/1.1, one request per connection."""
    default_port = 443 if req.scheme == "https" else 80
    host = req.host or (ip if port == default_port else f"{ip}:{port}")
    lines = [f"GET {req.path} HTTP/1.1", f"Host: {host}", "Connection: close", "User-Agent: testbed-verify"]
    if req.auth:
        cred = base64.b64encode(f"{req.auth[0]}:{req.auth[1]}".encode()).decode()
        lines.append(f"Authorization: Basic {cred}")
    lines += [f"{k}: {v}" for k, v in req.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of a ``Connection: close`` response (pure)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return status, headers, body


def _dechunk(body: bytes) -> bytes:
    out, rest = b"", body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";", 1)[0] or b"0", 16)
        if size == 0:
            break
        out, rest = out + rest[:size], rest[size + 2:]
    return out


def request(factory: SocketFactory, ip: str, port: int, req: HttpRequest, timeout: float = ANSWER_TIMEOUT) -> HttpAnswer:
    """Send *req* to ip:port from the factory's namespace; certificates are not verified (the
    check compares the subject instead: test clusters use self-signed ones)."""
    t0 = time.monotonic()
    s = factory(socket.SOCK_STREAM)
    local, subject = None, None
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        local = s.getsockname()
        if req.scheme == "https":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=req.server_name)
            der = s.getpeercert(binary_form=True)
            subject = x509.load_der_x509_certificate(der).subject.rfc4514_string() if der else None
        s.sendall(request_bytes(req, ip, port))
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    except (OSError, ssl.SSLError) as exc:
        return HttpAnswer(classify(exc), time.monotonic() - t0, local=local, detail=str(exc) or type(exc).__name__)
    finally:
        s.close()
    try:
        status, headers, body = parse_response(buf)
    except (IndexError, ValueError):
        return HttpAnswer("error", time.monotonic() - t0, local=local, detail=f"not HTTP: {buf[:60]!r}")
    a = HttpAnswer("answered", time.monotonic() - t0, local=local, status=status, headers=headers,
                   certificate_subject=subject)
    if headers.get("content-type", "").startswith("application/json"):
        try:
            doc = json.loads(body)
            a.hostname, a.clientip = doc.get("hostname"), doc.get("clientip")
            a.backend_headers = {k.lower(): str(v) for k, v in (doc.get("headers") or {}).items()}
        except ValueError:
            pass
    if a.hostname is None:
        # one line: the excerpt goes in a table cell and a JUnit message
        a.detail = " ".join(body[:120].decode(errors="replace").split())
    return a


def header_matches(want: str, got: str | None) -> bool:
    return got is not None and (want == "*" or want == got)


def describe(req: HttpRequest, tgt: Target) -> str:
    host = f" Host {req.host}" if req.host else ""
    sni = f" SNI {req.server_name}" if req.scheme == "https" and req.server_name else ""
    auth = f" as {req.auth[0]}" if req.auth else ""
    return f"{req.scheme} GET {req.path}{host}{sni}{auth} to {tgt.what}"


class HttpCheck:
    def http(self, src: Source, tgt: Target) -> None:
        h: Http = self.check.http
        a = request(self.factory(src), tgt.ip, tgt.port, h.request)
        what = describe(h.request, tgt)
        if not self.r.add("reach", f"answered ({what})", f"{a.outcome} in {a.seconds:.2f}s"
                          + (f": {a.detail}" if a.outcome != "answered" and a.detail else ""),
                          a.outcome == "answered"):
            return
        self.r.add("http.status", str(h.status), f"{a.status}" + (f" ({a.detail[:80]})" if a.detail else ""),
                   a.status == h.status)
        if h.answered_by:
            self.r.add("http.answeredBy", " or ".join(h.answered_by), a.hostname or "no pod named in the body",
                       a.hostname in h.answered_by)
        for name, want in h.headers:
            got = a.headers.get(name)
            self.r.add(f"http.headers.{name}", want, "absent" if got is None else got, header_matches(want, got))
        for name, want in h.backend_headers:
            got = a.backend_headers.get(name)
            self.r.add(f"http.backendHeaders.{name}", want, "absent" if got is None else got,
                       header_matches(want, got))
        if h.certificate_subject:
            self.r.add("http.certificate", f"subject {h.certificate_subject}",
                       f"subject {a.certificate_subject}", a.certificate_subject == h.certificate_subject)
