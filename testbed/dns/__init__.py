"""Cluster DNS: a CoreDNS-equivalent server for the testbed.

``corefile`` parses the Corefile, ``records`` answers the Kubernetes DNS specification (schema
1.1.0) from Services, EndpointSlices and Namespaces held in an ``records.ClusterIndex``,
``server`` serves it over UDP/TCP with health, readiness and Prometheus metrics, and
``upstream`` is the resolver of the underlay namespace that knows the scenario's external
clients under the zone ``ext.testbed.`` and refuses every other name, so no query leaves
the testbed.  ``python -m testbed.dns --corefile PATH --api SOCKET`` runs a replica.
"""
