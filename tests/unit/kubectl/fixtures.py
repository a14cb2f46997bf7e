import datetime as dt

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def pod(name="web-1", ns="default", created="2024-05-01T11:56:58Z", **status_extra):
    p = {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "labels": {"app": "web"},
                      "creationTimestamp": created},
         "spec": {"nodeName": "node-a", "containers": [{"name": "nginx", "image": "nginx:1.27",
                                                        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
         "status": {"phase": "Running", "hostIP": "172.18.0.2", "podIP": "10.244.1.2", "podIPs": [{"ip": "10.244.1.2"}],
                    "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "nginx", "ready": True, "restartCount": 0,
                                           "state": {"running": {"startedAt": "2024-05-01T11:57:00Z"}}}]}}
    p["status"].update(status_extra)
    return p


def service(name="web", type_="ClusterIP", created="2024-04-29T10:00:00Z", **spec):
    s = {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": name},
                      "creationTimestamp": created},
         "spec": {"type": type_, "selector": {"app": name}, "clusterIP": "10.96.12.34", "clusterIPs": ["10.96.12.34"],
                  "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                  "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
                  "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"},
         "status": {"loadBalancer": {}}}
    s["spec"].update(spec)
    return s


def slice_(name="web-x2b4c", n=2, created="2024-05-01T11:59:55Z", ready=True):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.244.1.{i + 2}"], "conditions": {"ready": ready}} for i in range(n)]}


def event(reason, message, first, last=None, count=1, type_="Normal", component="service-controller",
          kind="Service", name="web", uid="uid-web"):
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.{reason.lower()}", "namespace": "default"},
            "involvedObject": {"kind": kind, "name": name, "namespace": "default", "uid": uid},
            "type": type_, "reason": reason, "message": message, "source": {"component": component},
            "firstTimestamp": first, "lastTimestamp": last or first, "count": count}
