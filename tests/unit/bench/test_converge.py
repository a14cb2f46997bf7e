"""The converge benchmark's bookkeeping: CPU used between two readings, and when the
EndpointSlice controller wrote its last slice (from its Events)."""

import datetime

from testbed.bench import converge


class _Api:
    def __init__(self, events):
        self.events = events

    def list(self, kind, namespace):
        assert (kind, namespace) == ("Event", "default")
        return self.events, "1"


def test_last_slice_write_from_the_controllers_events():
    t0 = datetime.datetime(2026, 12, 6, 7, 0, 0, tzinfo=datetime.timezone.utc).timestamp()
    api = _Api([{"reason": "EndpointSliceCreated", "lastTimestamp": "2026-12-06T07:00:05Z"},
                {"reason": "EndpointSliceUpdated", "lastTimestamp": "2026-12-06T07:00:09Z"},
                {"reason": "Scheduled", "lastTimestamp": "2026-12-06T07:10:00Z"}])
    assert converge.slices_done(api, t0) == 9.0
    assert converge.slices_done(_Api([]), t0) is None


def test_cpu_since():
    assert converge._since({"a": 12.34, "b": 1.0}, {"a": 2.0}) == {"a": 10.3, "b": 1.0}
