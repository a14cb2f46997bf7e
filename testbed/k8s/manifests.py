"""Load Kubernetes YAML manifests as written for real clusters.

* multi-document streams (``---``), empty documents skipped;
* ``kind: List`` and any ``*List`` kind with ``items`` are flattened;
* every object is a :class:`Manifest` (a ``dict``) that remembers its :class:`Source`
  (file name, document index, and item index inside a List) so errors can name it;
* YAML is read the way ``sigs.k8s.io/yaml`` would turn it into JSON: timestamps stay
  strings, mapping keys become strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from . import kinds
from .errors import ManifestError


@dataclass(frozen=True)
class Source:
    file: str
    index: int  # 0-based document index in the file
    item: int | None = None  # 0-based index inside a List's items

    def __str__(self) -> str:
        s = f"{self.file}#{self.index}"
        if self.item is not None:
            s += f".items[{self.item}]"
        return s


class Manifest(dict):
    """A Kubernetes object (plain JSON-shaped dict) that knows where it came from."""

    source: Source | None = None

    def __init__(self, data: dict, source: Source | None = None):
        super().__init__(data)
        self.source = source

    def __reduce_ex__(self, protocol):  # keep .source through copy/deepcopy/pickle
        return (Manifest, (dict(self), self.source))

    def __deepcopy__(self, memo):
        import copy

        return Manifest(copy.deepcopy(dict(self), memo), self.source)


def source_of(obj: Any) -> Source | None:
    return getattr(obj, "source", None)


def describe(obj: dict) -> str:
    """``<source>: Kind ns/name`` for messages."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "<unnamed>")
    ns = meta.get("namespace")
    ident = f"{obj.get('kind', '?')} {ns + '/' if ns else ''}{name}"
    src = source_of(obj)
    return f"{src}: {ident}" if src else ident


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver (Kubernetes keeps times as strings)."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _jsonify(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k is None:
                k = "null"
            elif isinstance(k, bool):
                k = "true" if k else "false"
            out[str(k)] = _jsonify(v, where)
        return out
    if isinstance(value, list):
        return [_jsonify(v, where) for v in value]
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode()
    return value


def _check_string_map(obj: dict, field: str, src: Source) -> None:
    meta = obj.get("metadata") or {}
    m = meta.get(field)
    if m is None:
        return
    if not isinstance(m, dict):
        raise ManifestError(f"{src}: metadata.{field} must be a map of strings")
    for k, v in m.items():
        if not isinstance(v, str):
            t = "number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__
            if isinstance(v, bool):
                t = "bool"
            raise ManifestError(
                f"{src}: json: cannot unmarshal {t} into Go struct field ObjectMeta.metadata.{field} "
                f"of type string (metadata.{field}[{k}]: quote the value, e.g. \"{v}\")"
            )


def _check_object(obj: Any, src: Source) -> Manifest:
    if not isinstance(obj, dict):
        raise ManifestError(f"{src}: expected a Kubernetes object (a mapping), got {type(obj).__name__}")
    missing = [f for f in ("apiVersion", "kind") if not obj.get(f)]
    if missing:
        raise ManifestError(f"{src}: error validating data: [{', '.join(f + ' not set' for f in missing)}]")
    api_version, kind = obj["apiVersion"], obj["kind"]
    if kinds.lookup(api_version, kind) is None:
        hint = ""
        info = kinds.by_kind(kind)
        if info is not None:
            hint = f" (did you mean apiVersion: {info.api_version}?)"
        raise ManifestError(
            f'{src}: no matches for kind "{kind}" in version "{api_version}"{hint}; '
            f"supported: {kinds.supported_list()}"
        )
    if not isinstance(obj.get("metadata", {}), dict):
        raise ManifestError(f"{src}: metadata must be a mapping")
    _check_string_map(obj, "labels", src)
    _check_string_map(obj, "annotations", src)
    return Manifest(obj, src)


def _is_list(doc: dict) -> bool:
    kind = doc.get("kind")
    return isinstance(kind, str) and kind.endswith("List") and "items" in doc


def load_string(text: str, filename: str = "<string>") -> list[Manifest]:
    """Parse a YAML (or JSON) stream into objects with their sources."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(f"{filename}:{where}: error converting YAML to JSON: {problem}") from None
    out: list[Manifest] = []
    for index, doc in enumerate(docs):
        if doc is None or doc == {}:
            continue
        src = Source(filename, index)
        doc = _jsonify(doc, str(src))
        if isinstance(doc, dict) and _is_list(doc):
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise ManifestError(f"{src}: items must be a list")
            for i, item in enumerate(items):
                if item is None:
                    continue
                out.append(_check_object(item, Source(filename, index, i)))
            continue
        out.append(_check_object(doc, src))
    return out


def load_file(path: str | Path) -> list[Manifest]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ManifestError(f"{p}: {e.strerror or e}") from None
    return load_string(text, str(p))


def load_paths(paths: Iterable[str | Path]) -> list[Manifest]:
    """Load files and directories (``*.yaml``, ``*.yml``, ``*.json`` sorted by name), like ``kubectl apply -f``."""
    out: list[Manifest] = []
    for path in paths:
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
            for f in files:
                out.extend(load_file(f))
        else:
            out.extend(load_file(p))
    return out
