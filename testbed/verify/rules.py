"""The ``rules`` check kind: kube-proxy's KUBE-SVC chains for a Service on every node."""

from __future__ import annotations

from .. import exec
from .model import Check


class RulesCheck:
    def rules(self, c: Check) -> None:
        key = f"{c.to.namespace}/{c.to.service}"
        per_node, total_svc = [], 0
        for n in self.v.plan.nodes:
            self.nodes_involved.add(n.name)
            p = exec.run(["iptables-save", "-t", "nat"], netns=n.netns, check=False)
            chains = [ln for ln in p.stdout.splitlines() if ln.startswith(":KUBE-SVC-")]
            total_svc += len(chains)
            mine = [ln for ln in p.stdout.splitlines()
                    if ln.startswith("-A KUBE-SVC-") and (f'"{key}:' in ln or f'"{key} ' in ln or f'"{key}"' in ln)]
            per_node.append((n.name, len(chains), len(mine)))
        # must-see-something: the proxy is programming other Services on every node
        alive = all(k > 0 for _, k, _ in per_node)
        self.r.add("rules", "kube-proxy active: KUBE-SVC chains on every node",
                   ", ".join(f"{n}: {k} KUBE-SVC chains" for n, k, _ in per_node), alive)
        if c.rules == "absent":
            self.r.add("rules", f"no KUBE-SVC rule for {key} on any node",
                       ", ".join(f"{n}: {m}" for n, _, m in per_node), all(m == 0 for _, _, m in per_node))
        else:
            self.r.add("rules", f"KUBE-SVC rules for {key} on every node",
                       ", ".join(f"{n}: {m}" for n, _, m in per_node), all(m > 0 for _, _, m in per_node))
