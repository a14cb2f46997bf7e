"""Workload operations over an API client (``Cluster.api()``), as kubectl has them: ``logs``,
``rollout status|history|undo``, ``scale``, ``set image``, plus the testbed's ``kill`` and
``readiness``. Each returns text or yields lines; the CLI prints them.
"""

from __future__ import annotations

import os
import uuid
from typing import Iterator

from ..controllers.base import wait_for
from ..errors import TestbedError
from ..k8s import workloads as wl
from ..kubelet import plan as _kubelet

DEPLOY_KINDS = {"deploy", "deployment", "deployments", "deployment.apps", "deployments.apps"}


def parse_ref(args: list[str], kinds: set[str], what: str) -> str:
    """``deploy/NAME`` or ``deploy NAME`` (kind one of *kinds*) -> NAME."""
    if len(args) == 1 and "/" in args[0]:
        kind, _, name = args[0].partition("/")
    elif len(args) == 2:
        kind, name = args
    else:
        raise TestbedError(f"expected {what}/NAME or {what} NAME, got {' '.join(args) or 'nothing'}")
    if kind.lower() not in kinds or not name:
        raise TestbedError(f"expected {what}/NAME or {what} NAME, got {' '.join(args)}")
    return name


def pod_name(target: str) -> tuple[str | None, str]:
    """``pod/NAME``, ``pod/NS/NAME`` or ``NAME`` -> (namespace or None, name)."""
    kind, sep, rest = target.partition("/")
    if sep and kind in ("pod", "pods", "po"):
        ns, _, name = rest.rpartition("/")
        return ns or None, name
    if sep:
        raise TestbedError(f"expected pod/NAME, got {target}")
    return None, target


def replicasets_of(api, dep: dict) -> list[dict]:
    uid = dep["metadata"]["uid"]
    items, _ = api.list("ReplicaSet", dep["metadata"]["namespace"])
    return [r for r in items if any(o.get("uid") == uid and o.get("controller")
                                    for o in r["metadata"].get("ownerReferences") or [])]


def rollout_status(api, name: str, namespace: str = "default", *, watch: bool = True,
                   timeout: float = 300.0) -> Iterator[str]:
    """Lines as ``kubectl rollout status`` prints them; with *watch* until the rollout is done."""
    dep = api.get("Deployment", namespace, name)
    msg, done = wl.rollout_status(dep)
    yield msg
    if done or not watch:
        return
    last = [msg]

    def check(ds: list[dict]):
        for d in ds:
            if d["metadata"]["name"] == name:
                m, ok = wl.rollout_status(d)
                if m != last[-1]:
                    last.append(m)
                return ok
        raise TestbedError(f'deployment "{name}" was deleted')
    try:
        wait_for(api, "Deployment", check, namespace=namespace, timeout=timeout)
    except TimeoutError:
        yield from last[1:]
        raise TestbedError(f'timed out waiting for the rollout of deployment "{name}"') from None
    yield from last[1:]


def rollout_history(api, name: str, namespace: str = "default") -> str:
    dep = api.get("Deployment", namespace, name)
    rows = sorted((wl.revision_of(r), (r["metadata"].get("annotations") or {}).get(wl.CHANGE_CAUSE) or "<none>",
                   r) for r in replicasets_of(api, dep))
    lines = [f"deployment.apps/{name}", "REVISION  CHANGE-CAUSE"]
    lines += [f"{rev:<9} {cause}" for rev, cause, _ in rows if rev]
    return "\n".join(lines) + "\n"


def rollout_undo(api, name: str, namespace: str = "default", to_revision: int = 0) -> str:
    """Put the template of an earlier revision (default: the previous one) back into the Deployment."""
    dep = api.get("Deployment", namespace, name)
    rss = {wl.revision_of(r): r for r in replicasets_of(api, dep)}
    current = wl.revision_of(dep)
    if to_revision:
        target = rss.get(to_revision)
        if target is None:
            raise TestbedError(f"unable to find specified revision {to_revision} in history")
    else:
        earlier = [rev for rev in rss if rev and rev != current]
        if not earlier:
            raise TestbedError("no rollout history found for deployment " + repr(name))
        target = rss[max(earlier)]
    tmpl = target["spec"]["template"]
    labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
    labels.pop(wl.HASH_LABEL, None)
    tmpl = {**tmpl, "metadata": {**(tmpl.get("metadata") or {}), "labels": labels}}
    if wl.templates_equal(tmpl, dep["spec"]["template"]):
        return f"deployment.apps/{name} skipped rollback (current template already matches revision " \
               f"{wl.revision_of(target)})"
    dep["spec"]["template"] = tmpl
    api.update(dep)
    return f"deployment.apps/{name} rolled back"


def scale(api, name: str, replicas: int, namespace: str = "default") -> str:
    if replicas < 0:
        raise TestbedError("--replicas must be >= 0")
    api.patch("Deployment", namespace, name, {"spec": {"replicas": replicas}})
    return f"deployment.apps/{name} scaled"


def set_image(api, name: str, pairs: list[str], namespace: str = "default") -> str:
    dep = api.get("Deployment", namespace, name)
    ctrs = dep["spec"]["template"]["spec"]["containers"]
    changed = False
    for pair in pairs:
        cname, sep, image = pair.partition("=")
        if not sep or not image:
            raise TestbedError(f"expected CONTAINER=IMAGE, got {pair!r}")
        hits = [c for c in ctrs if cname in ("*", c.get("name"))]
        if not hits:
            raise TestbedError(f'unable to find container named "{cname}"')
        for c in hits:
            changed |= c.get("image") != image
            c["image"] = image
    if changed:
        ann = dep["metadata"].setdefault("annotations", {})
        ann[wl.CHANGE_CAUSE] = f"testbed set image deployment/{name} {' '.join(pairs)}"
        api.update(dep)
    return f"deployment.apps/{name} image updated"


def _find_pod(api, target: str, namespace: str) -> dict:
    ns, name = pod_name(target)
    return api.get("Pod", ns or namespace, name)


def kill(api, target: str, namespace: str = "default", container: str | None = None) -> str:
    """Kill a pod's container(s) as SIGKILL would; its restartPolicy decides what follows."""
    pod = _find_pod(api, target, namespace)
    nonce = uuid.uuid4().hex[:8] + (f"/{container}" if container else "")
    m = pod["metadata"]
    api.patch("Pod", m["namespace"], m["name"], {"metadata": {"annotations": {_kubelet.ANN_KILL: nonce}}})
    return f"pod/{m['name']} killed" + (f" (container {container})" if container else "")


def set_readiness(api, target: str, ready: bool, namespace: str = "default") -> str:
    """Make the default workload's /readyz fail (or pass again)."""
    pod = _find_pod(api, target, namespace)
    m = pod["metadata"]
    api.patch("Pod", m["namespace"], m["name"],
              {"metadata": {"annotations": {_kubelet.ANN_READY: None if ready else "false"}}})
    return f"pod/{m['name']} readiness {'restored' if ready else 'failing'}"


def logs(cluster: str, api, target: str, namespace: str = "default", container: str | None = None, *,
         follow: bool = False, stop=None) -> Iterator[str]:
    pod = _find_pod(api, target, namespace)
    m = pod["metadata"]
    names = [c["name"] for c in pod["spec"].get("containers") or []]
    if container is None:
        if len(names) != 1:
            raise TestbedError(f"a container name must be specified for pod {m['name']}, choose one of: "
                               f"[{' '.join(names)}]")
        container = names[0]
    elif container not in names + [c["name"] for c in pod["spec"].get("initContainers") or []]:
        raise TestbedError(f"container {container} is not valid for pod {m['name']}")
    path = _kubelet.log_path(cluster, m["namespace"], m["name"], container)
    if not os.path.exists(path) and not follow:
        return
    from ..inotify import IN_CREATE, IN_MODIFY, DirWatch

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with DirWatch(os.path.dirname(path), IN_CREATE | IN_MODIFY) as watch:  # tail -f without polling
        while not os.path.exists(path):
            if stop is not None and stop():
                return
            watch.wait(1.0)
        with open(path, "rb") as f:
            buf = b""
            while True:
                chunk = f.read(65536)
                if chunk:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        yield line.decode(errors="replace")
                    continue
                if not follow or (stop is not None and stop()):
                    if buf:
                        yield buf.decode(errors="replace")
                    return
                watch.wait(1.0)  # woken when the log grows
