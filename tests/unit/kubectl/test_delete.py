"""``testbed delete``: what kubectl does when some of the named objects are not there."""

from __future__ import annotations

import pytest

from testbed.apiserver.errors import NotFound
from testbed.kubectl.commands import delete


class Api:
    def __init__(self, present: set[tuple[str, str]]):
        self.present, self.deleted = present, []

    def delete(self, kind, ns, name):
        if (kind, name) not in self.present:
            raise NotFound(f'{kind.lower()}s "{name}" not found')
        self.deleted.append((kind, name))


REFS = [("deploy", "default", "gone"), ("svc", "default", "web"), ("pod", "default", "also-gone")]


def test_a_missing_object_does_not_stop_the_others():
    api = Api({("Service", "web")})
    lines = []
    with pytest.raises(NotFound, match='deployments "gone" not found'):
        for line in delete(api, REFS):
            lines.append(line)
    assert lines == ['service "web" deleted'] and api.deleted == [("Service", "web")]


def test_ignore_not_found():
    api = Api({("Service", "web")})
    assert list(delete(api, REFS, ignore_not_found=True)) == ['service "web" deleted']
