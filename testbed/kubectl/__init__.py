"""kubectl-like output for the testbed's objects: ``get`` tables and ``-o json|yaml``
(:mod:`.printers`), ``describe`` (:mod:`.describe`) and resource-name resolution
(:mod:`.resources`). Pure functions over JSON-shaped dicts."""

from .describe import describe_pod, describe_service, events_for
from .printers import age, format_table, human_duration, no_resources, rows, to_json, to_yaml
from .resources import RESOURCES, ResourceError, ResourceInfo, accepted_names, parse_args, parse_ref, resolve
from .tabwriter import tabwrite

__all__ = [
    "RESOURCES", "ResourceError", "ResourceInfo", "accepted_names", "age", "describe_pod",
    "describe_service", "events_for", "format_table", "human_duration", "no_resources", "parse_args",
    "parse_ref", "resolve", "rows", "tabwrite", "to_json", "to_yaml",
]
