"""Troubleshooting a running cluster: ``trace`` follows one real connection attempt through the
kernel of every namespace it crosses; ``doctor`` runs the seeds' checklist over Services,
pods and nodes. Both return data (``TraceResult``, ``[Finding]``); the CLI only prints it."""

from .checks import Finding
from .checkup import doctor
from .explain import TraceResult, TraceStep
from .tracer import trace

__all__ = ["Finding", "TraceResult", "TraceStep", "doctor", "trace"]
