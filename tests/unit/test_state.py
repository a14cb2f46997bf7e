"""The state directory and what it holds are readable by their owner only."""

import json
import os

import pytest

from testbed import naming, netns, state


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(naming, "STATE_ROOT", str(tmp_path))
    monkeypatch.setattr(netns, "list_names", lambda prefix="": [])
    old = os.umask(0o022)
    yield tmp_path
    os.umask(old)


def mode(path) -> str:
    return oct(os.stat(path).st_mode & 0o777)


def test_claimed_directory_is_0700(root):
    d = state.claim("c1")
    assert mode(d) == oct(0o700)


def test_json_files_are_0600(root):
    state.claim("c1")
    state.write_json("c1", "state.json", {"pids": {}})
    state.update_json("c1", "plan.json", a=1)
    for name in ("state.json", "plan.json"):
        assert mode(os.path.join(state.directory("c1"), name)) == oct(0o600)
    assert json.load(open(os.path.join(state.directory("c1"), "plan.json"))) == {"a": 1}


def test_open_private_creates_0600_and_tightens_an_old_file(root):
    d = state.claim("c1")
    old = os.path.join(d, "old.log")
    with open(old, "w") as f:
        f.write("x\n")
    os.chmod(old, 0o644)
    with state.open_private(old, "ab") as f:
        f.write(b"y\n")
    with state.open_private(os.path.join(d, "new.log"), "w") as f:
        f.write("z")
    assert mode(old) == mode(os.path.join(d, "new.log")) == oct(0o600)
    assert open(old).read() == "x\ny\n"


def test_update_pids_loses_no_writer(root):
    import threading

    state.claim("c1")
    state.write_json("c1", "state.json", {"pids": {"control-plane": 1}, "store": {"kind": "memory"}})

    def writer(kind: str) -> None:
        for i in range(40):
            state.update_pids("c1", {f"{kind}/node{i}": i})

    threads = [threading.Thread(target=writer, args=(k,)) for k in ("kubelet", "proxy", "other")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = state.read_json("c1", "state.json")
    assert len(info["pids"]) == 1 + 3 * 40 and info["store"] == {"kind": "memory"}
    assert state.update_pids("c1", drop=["control-plane"]).get("control-plane") is None
