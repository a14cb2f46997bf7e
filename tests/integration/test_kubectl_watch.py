"""Watches of modern clients against a testbed cluster over HTTPS: kubectl 1.37's informers ask
for watch-list (``sendInitialEvents=true``) and need its initial-events-end bookmark; ``wait``
and ``get -w`` with every kubectl version here; the Python client's bookmarks."""

from __future__ import annotations

import os
import select
import subprocess
import time
import uuid

import pytest

from .netutil import uniq
from .test_kubectl import _kubectls, run, with_kubeconfig

pytestmark = pytest.mark.root
NAME = uniq("ikw")
SLEEPER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "labels": {"app": "sleeper"}},
           "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}
KUBECTLS = [p for p in _kubectls() if p.values[0]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from with_kubeconfig(tmp_path_factory, NAME, 1, [SLEEPER])


def popen(kubectl: str, cfg: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([kubectl, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"KUBECONFIG": cfg, "HOME": os.path.dirname(cfg), "PATH": os.environ["PATH"]})


class Lines:
    """The lines of a child's pipe, read with os.read so select() sees what is not read yet
    (a buffered file object may hold lines select() cannot know about)."""

    def __init__(self, pipe):
        self.fd, self.buf, self.seen = pipe.fileno(), b"", []

    def until(self, want, timeout: float = 30.0) -> list[str]:
        """The lines up to the first one *want* accepts (waits on the pipe, at most *timeout*);
        fails if the pipe ends or time runs out first."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                got.append(line.decode() + "\n")
                self.seen.append(got[-1])
                if want(got[-1]):
                    return got
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self.fd], [], [], left)[0], f"timed out; got {got}"
            data = os.read(self.fd, 65536)
            assert data, f"the stream ended; got {got}"
            self.buf += data


COMPLAINTS = ("bookmark expired", "required bookmark", "awaiting required bookmark")


def bookmark_warnings(stderr: str) -> list[str]:
    """client-go's complaints that the initial-events-end bookmark never came (logged at info
    level: "Warning: event bookmark expired ... not received required bookmark event marking
    the end of initial events stream")."""
    return [ln for ln in stderr.splitlines() if any(c in ln for c in COMPLAINTS)]


def test_kubectl_137_wait_jsonpath_sees_a_restart(cluster):
    c, cfg = cluster
    kubectl = KUBECTLS[0].values[0]  # the PyPI wheel: 1.37, whose informers use watch-list
    assert run(kubectl, cfg, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s").returncode == 0
    p = popen(kubectl, cfg, "wait", "-v=6", "--for=jsonpath={.status.containerStatuses[0].restartCount}=1",
              "pod/sleeper", "--timeout=60s")
    try:
        # -v=6 logs each request once its answer came: the watch-list request is streaming now
        stderr = Lines(p.stderr)
        seen = stderr.until(lambda ln: "sendInitialEvents=true" in ln and "watch=true" in ln)
        assert "resourceVersionMatch=NotOlderThan" in seen[-1] and "200 OK" in seen[-1], seen[-1]
        t0 = time.monotonic()
        ann = f"testbed.io/kill={uuid.uuid4().hex[:8]}"
        assert run(kubectl, cfg, "annotate", "pod", "sleeper", ann).returncode == 0
        out, err = p.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        p.kill()
        p.wait()
    err = "".join(stderr.seen) + stderr.buf.decode() + err
    assert p.returncode == 0 and "pod/sleeper condition met" in out, (out, err[-2000:])
    assert took < 30, took
    assert not bookmark_warnings(err)
    assert "received the bookmark that marks the end of initial events stream" in err  # -v=6


@pytest.mark.parametrize("kubectl", KUBECTLS)
def test_kubectl_wait_ready_and_get_watch_show_a_change(cluster, kubectl):
    c, cfg = cluster
    res = run(kubectl, cfg, "wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
    assert (res.returncode, res.stdout.strip()) == (0, "pod/sleeper condition met"), res.stderr
    assert not bookmark_warnings(res.stderr)
    p = popen(kubectl, cfg, "get", "pods", "-w", "--output-watch-events", "-l", "app=sleeper")
    try:
        stdout = Lines(p.stdout)
        stdout.until(lambda ln: "sleeper" in ln)  # the current state first
        nonce = uuid.uuid4().hex[:8]
        assert run(kubectl, cfg, "label", "pod", "sleeper", f"seen={nonce}", "--overwrite").returncode == 0
        lines = stdout.until(lambda ln: ln.startswith("MODIFIED") and "sleeper" in ln)
        assert lines[-1].split()[:2] == ["MODIFIED", "sleeper"], lines
    finally:
        p.kill()
        _, err = p.communicate()
    assert not bookmark_warnings(err)


def test_python_client_gets_bookmarks(cluster):
    from kubernetes import client, config, watch

    _, cfg = cluster
    api = client.CoreV1Api(config.new_client_from_config(config_file=cfg))
    pods = api.list_namespaced_pod("default", label_selector="app=sleeper")
    # a periodic bookmark comes 2 s before the watch's timeout, at least as new as the list
    w = watch.Watch()
    evs = [(e["type"], e["raw_object"]) for e in w.stream(
        api.list_namespaced_pod, "default", label_selector="app=sleeper", allow_watch_bookmarks=True,
        resource_version=pods.metadata.resource_version, timeout_seconds=3)]
    bookmarks = [o for t, o in evs if t == "BOOKMARK"]
    assert len(bookmarks) == 1, evs
    assert int(bookmarks[0]["metadata"]["resourceVersion"]) >= int(pods.metadata.resource_version)
    assert bookmarks[0]["kind"] == "Pod" and w.resource_version == bookmarks[0]["metadata"]["resourceVersion"]
    # watch-list: the state, then the initial-events-end bookmark
    evs = [(e["type"], e["raw_object"]) for e in watch.Watch().stream(
        api.list_namespaced_pod, "default", label_selector="app=sleeper", allow_watch_bookmarks=True,
        send_initial_events=True, resource_version_match="NotOlderThan", timeout_seconds=1)]
    assert [t for t, _ in evs] == ["ADDED", "BOOKMARK"], evs
    assert evs[0][1]["metadata"]["name"] == "sleeper"
    assert evs[1][1]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
