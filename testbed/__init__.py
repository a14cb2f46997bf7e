"""testbed: a Kubernetes Service-networking lab in Linux network namespaces."""

__version__ = "0.1.0"
