"""The proxy's metrics: summaries like upstream's histograms, written as one JSON file."""

from __future__ import annotations

import bisect
import collections
import os
from typing import Any

from testbed import jsoncodec

HISTOGRAM_BUCKETS = tuple(0.001 * 2 ** i for i in range(15))   # upstream: ExponentialBuckets(0.001, 2, 15)


class Summary:
    """A histogram-ish summary: count/sum/min/max/last, quantiles over the last 1024 values,
    and cumulative buckets like upstream's ``ExponentialBuckets(0.001, 2, 15)``."""

    def __init__(self, window: int = 1024) -> None:
        self.count = 0
        self.sum = 0.0
        self.min: float | None = None
        self.max: float | None = None
        self.last: float | None = None
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self._buckets = [0] * (len(HISTOGRAM_BUCKETS) + 1)

    def observe(self, v: float) -> None:
        self.count += 1
        self.sum += v
        self.min = v if self.min is None else min(self.min, v)
        self.max = v if self.max is None else max(self.max, v)
        self.last = v
        self._recent.append(v)
        self._buckets[bisect.bisect_left(HISTOGRAM_BUCKETS, v)] += 1

    def quantile(self, q: float) -> float | None:
        if not self._recent:
            return None
        vals = sorted(self._recent)
        return vals[min(len(vals) - 1, int(q * len(vals)))]

    def to_dict(self) -> dict:
        cum, buckets = 0, {}
        for le, n in zip(list(HISTOGRAM_BUCKETS) + [float("inf")], self._buckets):
            cum += n
            buckets["+Inf" if le == float("inf") else f"{le:g}"] = cum
        r = (lambda v: None if v is None else round(v, 6))
        return {"count": self.count, "sum": r(self.sum), "min": r(self.min), "max": r(self.max),
                "last": r(self.last), "p50": r(self.quantile(0.5)), "p90": r(self.quantile(0.9)),
                "p99": r(self.quantile(0.99)), "buckets": buckets}


def write_json_atomic(path: str, doc: Any) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(jsoncodec.dumpb(doc, sort_keys=True, indent=True) + b"\n")
    os.replace(tmp, path)
