"""Every scenario in scenarios/ is brought up, verified and torn down; all its checks pass."""

from __future__ import annotations

import glob
import os

import pytest

pytestmark = pytest.mark.root

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = sorted(glob.glob(os.path.join(REPO, "scenarios", "*.yaml")))


def _param(path: str):
    return pytest.param(path, id=os.path.basename(path)[:-5])


@pytest.mark.parametrize("path", [_param(p) for p in SCENARIOS])
def test_scenario(path, tmp_path):
    from testbed.cluster import run_scenario
    from testbed.verify.report import write_junit

    results = run_scenario(path, artifacts=str(tmp_path / "evidence"))
    write_junit(str(tmp_path / "junit.xml"), os.path.basename(path), results)
    assert results, "no checks ran"
    failed = [f"{r.check}: {r.failure_text()}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)
    for r in results:  # every check kept its evidence
        assert r.evidence and all(os.path.exists(e) for e in r.evidence), r.check
