"""CoreDNS's Prometheus metrics (the names and labels its dashboards and alerts use)."""

from __future__ import annotations

import bisect
from collections import defaultdict

BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
           1.024, 2.048, 4.096, 8.192)


class Metrics:
    def __init__(self, server: str):
        self.server = server
        self.requests: dict[tuple, int] = defaultdict(int)  # (zone, proto, family, type)
        self.responses: dict[tuple, int] = defaultdict(int)  # (zone, rcode)
        self.hist: dict[tuple, list] = {}  # (zone, type) -> [bucket counts..., sum, count]
        self.cache_hits = 0
        self.cache_misses = 0
        self.forward_requests: dict[str, int] = defaultdict(int)

    def observe(self, zone: str, proto: str, family: str, qtype: str, rcode: str, seconds: float) -> None:
        self.requests[(zone, proto, family, qtype)] += 1
        self.responses[(zone, rcode)] += 1
        h = self.hist.get((zone, qtype))
        if h is None:
            h = self.hist[(zone, qtype)] = [0] * (len(BUCKETS) + 2)
        h[bisect.bisect_left(BUCKETS, seconds)] += 1
        h[-2] += seconds
        h[-1] += 1

    def render(self) -> str:
        s = self.server
        out = ["# HELP coredns_dns_requests_total Counter of DNS requests made per zone, protocol and family.",
               "# TYPE coredns_dns_requests_total counter"]
        for (zone, proto, fam, qtype), n in sorted(self.requests.items()):
            out.append(f'coredns_dns_requests_total{{family="{fam}",proto="{proto}",server="{s}",'
                       f'type="{qtype}",view="",zone="{zone}"}} {n}')
        out += ["# HELP coredns_dns_responses_total Counter of response status codes.",
                "# TYPE coredns_dns_responses_total counter"]
        for (zone, rcode), n in sorted(self.responses.items()):
            out.append(f'coredns_dns_responses_total{{plugin="",rcode="{rcode}",server="{s}",view="",'
                       f'zone="{zone}"}} {n}')
        out += ["# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took.",
                "# TYPE coredns_dns_request_duration_seconds histogram"]
        for (zone, qtype), h in sorted(self.hist.items()):
            labels = f'server="{s}",type="{qtype}",view="",zone="{zone}"'
            acc = 0
            for le, n in zip(BUCKETS, h):
                acc += n
                out.append(f'coredns_dns_request_duration_seconds_bucket{{{labels},le="{le}"}} {acc}')
            out.append(f'coredns_dns_request_duration_seconds_bucket{{{labels},le="+Inf"}} {h[-1]}')
            out.append(f"coredns_dns_request_duration_seconds_sum{{{labels}}} {h[-2]:.9f}")
            out.append(f"coredns_dns_request_duration_seconds_count{{{labels}}} {h[-1]}")
        out += ["# TYPE coredns_cache_hits_total counter",
                f'coredns_cache_hits_total{{server="{s}",type="success",view="",zones="."}} {self.cache_hits}',
                "# TYPE coredns_cache_misses_total counter",
                f'coredns_cache_misses_total{{server="{s}",view="",zones="."}} {self.cache_misses}',
                "# TYPE coredns_forward_requests_total counter"]
        for to, n in sorted(self.forward_requests.items()):
            out.append(f'coredns_forward_requests_total{{to="{to}"}} {n}')
        return "\n".join(out) + "\n"
