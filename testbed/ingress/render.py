"""Render a :class:`~testbed.ingress.model.Config` as one ``nginx.conf`` (pure).

The layout follows ingress-nginx's ``rootfs/etc/nginx/template/nginx.tmpl``: a default server
(404, the fake certificate) and one server per host, HTTP and HTTPS on the same server, the
same proxy headers, basic auth and allow/deny in the location, and every location proxying to
one ``upstream_balancer`` whose peer Lua picks (``lua/testbed_ingress.lua``), as ingress-nginx's
balancer does. Which backend a location sends to and the backends' ready endpoints are not in
the text: :func:`dynamic` renders them as the table the controller posts to nginx, so endpoint
changes and backend switches need no reload. The text changes (and nginx reloads) only when
hosts, paths, TLS or annotations do.

Every path in the output is relative: nginx resolves them against the directory of the
configuration (``-p DIR -c DIR/nginx.conf``), so the text is the same wherever it runs.
"""

from __future__ import annotations

import hashlib

from .model import DEFAULT_SERVER, Config, Location, Server

DEFAULT_CERT = "ssl/default-fake-certificate.pem"
HEALTHZ_PORT = 10254

_PROXY_PASS = {"HTTP": "proxy_pass http://", "HTTPS": "proxy_pass https://",
               "GRPC": "grpc_pass grpc://", "GRPCS": "grpc_pass grpcs://"}

CONTROL_PORT = 10246
LUA_MODULE = "testbed_ingress"

_HEAD = """\
# nginx.conf rendered by the testbed ingress controller from Ingress objects; do not edit.
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
worker_processes 1;
# the controller's directory is inside the cluster's private (0700) state directory and workers
# read htpasswd files per request, so they keep the master's user; the pod is the boundary
user root;
pid nginx.pid;
error_log stderr notice;
# a reload lets old workers finish in-flight requests, but not wait on idle clients forever
worker_shutdown_timeout 240s;

events {
    worker_connections 4096;
}

http {
    client_body_temp_path tmp/client-body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    default_type text/html;
    server_tokens off;
    keepalive_timeout 75s;
    access_log off;

    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;

    # keep the client's request id, as ingress-nginx does, or make one
    map $http_x_request_id $req_id {
        default $http_x_request_id;
        "" $request_id;
    }

    # the routes and endpoints the controller posts (survives reloads: same name and size)
    lua_package_path "$prefix/lua/?.lua;;";
    lua_shared_dict configuration 16m;

    upstream upstream_balancer {
        server 0.0.0.1;  # a placeholder: the balancer sets each try's peer
        balancer_by_lua_block {
            require("testbed_ingress").balance()
        }
    }
"""

_CONTROL = """\
    # where the controller posts the dynamic table; inside the pod's namespace only
    server {
        listen 127.0.0.1:%(port)d;
        location = /configuration {
            client_max_body_size 16m;
            client_body_buffer_size 16m;
            content_by_lua_block {
                require("testbed_ingress").configure()
            }
        }
        location / {
            return 404;
        }
    }
"""

_DEFAULT_SERVER = """\
    # everything no Ingress claims: 404, as ingress-nginx's default backend answers
    # no reuseport: with per-worker sockets a reload drops the connections queued on the old ones
    server {
        listen 80 default_server backlog=4096;
        listen 443 ssl default_server backlog=4096;
        server_name _;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(cert)s;
"""

_HEALTHZ = """\
    # the controller's readiness endpoint, as on ingress-nginx's status port: ready once the
    # controller has posted the routes (before that every location would answer 503)
    server {
        listen %(port)d;
        location = /healthz {
            access_log off;
            content_by_lua_block {
                require("testbed_ingress").healthz()
            }
        }
        location / {
            return 404;
        }
    }
"""

# Every backend is a pod on this host, answering a SYN in well under a millisecond; ingress-nginx's
# 5s connect timeout would only stall requests sent to a pod that just went away before nginx
# learnt it, so give up after 1s and try the next endpoint.
_PROXY_HEADERS = """\
            proxy_set_header Host $host;
            proxy_set_header X-Request-ID $req_id;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Scheme $scheme;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
"""


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def location_key(server: str, loc: Location) -> str:
    """How the text and the dynamic table name a location: a digest of its server and nginx
    match (a regex match may hold ``$``, which nginx would read as a variable in ``set``)."""
    return hashlib.sha1(f"{server} {loc.match}".encode()).hexdigest()[:16]


def _location(server: str, loc: Location, https_host: bool) -> str:
    a = loc.annotations
    lines = [f"        # {loc.ingress} {loc.path_type} {loc.path}",
             f"        location {loc.match} {{"]
    if loc.backend is not None:
        lines.append(f"            set $ingress_location {location_key(server, loc)};")
        lines.append('            set $proxy_upstream_name "-";')
    if loc.ssl_redirect and https_host:
        lines.append("            if ($scheme = http) {\n                return 308 https://$host$request_uri;\n            }")
    for cidr in a.whitelist_source_range:
        lines.append(f"            allow {cidr};")
    if a.whitelist_source_range:
        lines.append("            deny all;")
    if loc.htpasswd_file:
        lines.append(f"            auth_basic {_quote(a.auth_realm)};")
        lines.append(f"            auth_basic_user_file {loc.htpasswd_file};")
    lines.append(_PROXY_HEADERS.rstrip("\n"))
    if loc.backend is None:
        lines.append("            return 503;")
    else:
        if a.rewrite_target:
            lines.append(f"            rewrite {_quote('(?i)' + loc.path)} {a.rewrite_target} break;")
        # after allow/deny and basic auth: a refused client never picks a backend
        lines.append('            access_by_lua_block {\n                require("testbed_ingress").route()\n            }')
        lines.append(f"            {_PROXY_PASS[a.backend_protocol]}upstream_balancer;")
    lines.append("        }")
    return "\n".join(lines) + "\n"


def _server(s: Server) -> str:
    out = []
    if s.name == DEFAULT_SERVER:
        out.append(_DEFAULT_SERVER % {"cert": DEFAULT_CERT})
    else:
        cert = f"ssl/{s.pem}" if s.pem else DEFAULT_CERT
        out.append(f"    server {{\n        listen 80;\n        listen 443 ssl;\n        server_name {s.name};\n"
                   f"        ssl_certificate {cert};\n        ssl_certificate_key {cert};\n")
    for loc in s.locations:
        out.append(_location(s.name, loc, s.pem is not None))
    if not any(l.match in ("/", '~* "^/"') for l in s.locations):
        out.append("        location / {\n            return 404;\n        }\n")
    out.append("    }\n")
    return "".join(out)


def render(config: Config) -> str:
    """The complete ``nginx.conf`` text for *config* (without routes and endpoints)."""
    parts = [_HEAD, "\n" + _CONTROL % {"port": CONTROL_PORT}, "\n" + _HEALTHZ % {"port": HEALTHZ_PORT}]
    for s in config.servers:
        parts.append("\n" + _server(s))
    parts.append("}\n")
    return "".join(parts)


def dynamic(config: Config) -> str:
    """The table the controller posts to nginx: each location's backend and each backend's
    ready endpoints, one tab-separated line each (read by ``lua/testbed_ingress.lua``)."""
    lines = [f"route\t{location_key(s.name, loc)}\t{loc.backend.upstream}"
             for s in config.servers for loc in s.locations if loc.backend is not None]
    lines += [f"upstream\t{u.name}\t{' '.join(u.endpoints)}" for u in config.upstreams]
    return "\n".join(lines) + "\n"
