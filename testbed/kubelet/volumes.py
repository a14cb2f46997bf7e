"""configMap volumes: a pod's ConfigMap keys as files in a per-pod directory, kept current.

The kubelet materializes a ``configMap`` volume as ``<state>/pods/<ns>_<pod>/volumes/<volume>/``
(one file per key, or per ``items`` entry), and rewrites the files when the ConfigMap changes,
each by an atomic rename in that directory, so a reader watching the directory (CoreDNS's
``reload``) sees one complete new file. A container's ``volumeMounts`` map its paths onto
those directories (``host_path``).
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import threading
from collections.abc import Callable
from typing import Any

from .. import state

log = logging.getLogger(__name__)
CONFIG_MAP = "ConfigMap"


# -- pure ----------------------------------------------------------------------------------
def volume_files(volume: dict, config_map: dict | None) -> dict[str, str]:
    """Relative path -> content of one configMap volume (``items`` select and rename keys)."""
    data = dict((config_map or {}).get("data") or {})
    items = (volume.get("configMap") or {}).get("items")
    if not items:
        return data
    return {str(i["path"]): data[i["key"]] for i in items if i.get("key") in data and i.get("path")}


def pod_dir(cluster: str, namespace: str, pod: str) -> str:
    return os.path.join(state.directory(cluster), "pods", f"{namespace}_{pod}")


def volume_dir(cluster: str, namespace: str, pod: str, volume: str) -> str:
    return os.path.join(pod_dir(cluster, namespace, pod), "volumes", volume)


def mounts(cluster: str, pod: dict, container: dict) -> dict[str, str]:
    """mountPath -> host directory for the container's mounts of configMap volumes."""
    meta = pod.get("metadata") or {}
    kinds = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("configMap")}
    out = {}
    for m in container.get("volumeMounts") or []:
        if m.get("name") in kinds and m.get("mountPath"):
            out[posixpath.normpath(m["mountPath"])] = volume_dir(cluster, meta.get("namespace", "default"),
                                                                 meta["name"], m["name"])
    return out


def host_path(path: str, mount_map: dict[str, str]) -> str | None:
    """The host file a container path names through its mounts (the longest mountPath wins)."""
    path = posixpath.normpath(path)
    for mount in sorted(mount_map, key=len, reverse=True):
        if path == mount or path.startswith(mount.rstrip("/") + "/"):
            return os.path.join(mount_map[mount], posixpath.relpath(path, mount))
    return None


# -- side effects --------------------------------------------------------------------------
def _write(d: str, files: dict[str, str]) -> None:
    os.makedirs(d, exist_ok=True)
    for rel, text in files.items():
        target = os.path.join(d, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            with open(target) as f:
                if f.read() == text:
                    continue
        except OSError:
            pass
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, target)


class ConfigMapVolumes:
    """Materializes pods' configMap volumes and follows their ConfigMaps with one watch."""

    def __init__(self, store: Any, cluster: str):
        self.store = store
        self.cluster = cluster
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], tuple[dict, Callable[[], bool]]] = {}  # (ns, pod) -> (pod, alive)
        self._thread: threading.Thread | None = None

    def materialize(self, pod: dict, alive: Callable[[], bool] = lambda: True) -> None:
        """Write every configMap volume of the pod now; keep it current while ``alive()``
        (the pod's directory goes once the pod is gone)."""
        meta = pod["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        with self._lock:
            self._pods[key] = (pod, alive)
            if self._thread is None:
                self._thread = threading.Thread(target=self._follow, name="kubelet-configmaps", daemon=True)
                self._thread.start()
        self._sync_pod(pod, None)

    def _sync_pod(self, pod: dict, changed: dict | None) -> None:
        meta = pod["metadata"]
        ns = meta.get("namespace", "default")
        for v in (pod.get("spec") or {}).get("volumes") or []:
            ref = v.get("configMap")
            if not ref:
                continue
            if changed is not None and (changed["metadata"].get("namespace"), changed["metadata"]["name"]) \
                    != (ns, ref.get("name")):
                continue
            cm = changed
            if cm is None:
                try:
                    cm = self.store.get(CONFIG_MAP, ns, ref.get("name"))
                except Exception:  # noqa: BLE001 - not found: an empty volume, as with optional
                    cm = None
            _write(volume_dir(self.cluster, ns, meta["name"], v["name"]), volume_files(v, cm))

    def _follow(self) -> None:
        _, rv = self.store.list(CONFIG_MAP)
        for ev in self.store.watch(CONFIG_MAP, None, rv):
            if ev.get("type") not in ("ADDED", "MODIFIED"):
                continue
            with self._lock:
                gone = [k for k, (_, alive) in self._pods.items() if not alive()]
                for k in gone:
                    del self._pods[k]
                pods = [pod for pod, _ in self._pods.values()]
            for ns, name in gone:
                shutil.rmtree(pod_dir(self.cluster, ns, name), ignore_errors=True)
            for pod in pods:
                try:
                    self._sync_pod(pod, ev["object"])
                except OSError as exc:
                    log.warning("kubelet: configMap volume of %s: %s", pod["metadata"]["name"], exc)
