import random

from testbed.k8s.endpoints import PodIndex, desired_slices

from .helpers import admission, pod


def test_admit_1000_services_and_slices_for_1000x2_pods():
    # correctness at size only: the time is scripts/bench/control-plane's to measure (a timed
    # assertion here fails whenever the machine is busy)
    adm = admission()
    services = [adm.admit_create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"svc-{i}"},
                                  "spec": {"type": "NodePort" if i % 2 else "ClusterIP", "selector": {"app": f"a{i}"},
                                           "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
                for i in range(1000)]
    pods = [pod(f"p{i}-{j}", labels={"app": f"a{i}"}, ip=f"10.{244 + i // 250}.{i % 250}.{j + 2}",
                ports=[{"name": "http", "containerPort": 8080}]) for i in range(1000) for j in range(2)]
    idx = PodIndex(pods)
    rng = random.Random(0)
    total = 0
    for s in services:
        c, u, d = desired_slices(s, idx.for_service(s), [], rng=rng)
        total += sum(len(sl["endpoints"]) for sl in c)
    assert total == 2000
    assert len({s["spec"]["clusterIP"] for s in services}) == 1000
