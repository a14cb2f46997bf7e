"""Apply nftables-mode transactions inside a node's network namespace.

Every kernel call is one ``nft`` process started from a thread that has entered the node's
netns (``testbed.netns``): ``nft -f -`` per sync, ``nft -j list table`` to read back. Nothing
outside ``table ip kube-proxy`` is touched, except ``cleanup_iptables_mode``, which removes
iptables mode's own ``KUBE-*`` chains and the jumps to them (flannel's rules stay) when a
node switches to this mode.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

from testbed import netns
from testbed.proxy.nftables import names

NFT = "nft"


class NftError(RuntimeError):
    """An ``nft`` call failed; the message is one line: what ran, where, and nft's complaint."""


@dataclass(frozen=True)
class Existing:
    """Service chains and affinity sets the kernel holds (a full sync flushes/deletes extras)."""

    chains: frozenset[str]
    sets: frozenset[str]


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    err = next((ln for ln in lines if ln.startswith("Error") or "Error:" in ln), None)
    return err or (lines[0] if lines else "no error output")


def _run(ns: str | None, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    def go() -> subprocess.CompletedProcess:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True)
    return netns.run_in(ns, go) if ns else go()


class NftApplier:
    """One node's ``table <family> kube-proxy``; ``ns`` None means the caller's own netns."""

    def __init__(self, ns: str | None, family: str = "ip") -> None:
        if family not in ("ip", "ip6"):
            raise ValueError(f"nftables family {family!r}: allowed values are ip, ip6")
        self.ns = ns
        self.family = family

    @property
    def where(self) -> str:
        return f"netns {self.ns}" if self.ns else "this netns"

    def run(self, text: str) -> None:
        """Run one transaction (``nft -f -``): all of it applies, or none of it."""
        if not text:
            return
        r = _run(self.ns, [NFT, "-f", "-"], text)
        if r.returncode != 0:
            raise NftError(f"nft -f - in {self.where} failed: {_first_error(r.stderr)}")

    def list_json(self) -> dict | None:
        """``nft -j list table``, parsed; None if the table does not exist."""
        r = _run(self.ns, [NFT, "-j", "list", "table", self.family, names.TABLE])
        if r.returncode != 0:
            if "No such file or directory" in r.stderr:
                return None
            raise NftError(f"nft list table {self.family} {names.TABLE} in {self.where} failed: "
                           f"{_first_error(r.stderr)}")
        return json.loads(r.stdout)

    def list_text(self) -> str:
        """``nft list table`` as people read it ('' if the table does not exist)."""
        r = _run(self.ns, [NFT, "list", "table", self.family, names.TABLE])
        if r.returncode != 0:
            if "No such file or directory" in r.stderr:
                return ""
            raise NftError(f"nft list table in {self.where} failed: {_first_error(r.stderr)}")
        return r.stdout

    def existing(self) -> Existing:
        """Names of our service chains and affinity sets in the kernel (for a full sync)."""
        data = self.list_json()
        return existing_from_json(data) if data else Existing(frozenset(), frozenset())

    def delete_table(self) -> None:
        """Remove the whole table (``add`` first, so a missing table is not an error)."""
        self.run(f"add table {self.family} {names.TABLE}\n"
                 f"delete table {self.family} {names.TABLE}\n")

    def cleanup_iptables_mode(self) -> int:
        """Remove iptables mode's ``KUBE-*`` chains and the jumps to them; returns chains removed."""
        removed = 0
        for table in ("nat", "filter", "mangle"):
            r = _run(self.ns, ["iptables-save", "-t", table])
            if r.returncode != 0:
                continue        # table not present in this netns: nothing of ours in it
            text, n = iptables_cleanup_restore(table, r.stdout)
            if not n:
                continue
            rr = _run(self.ns, ["iptables-restore", "-w", "5", "--noflush"], text)
            if rr.returncode != 0:
                raise NftError(f"iptables-restore --noflush in {self.where} failed: "
                               f"{_first_error(rr.stderr)}")
            removed += n
        return removed


def check(applier: NftApplier, intended_dump: str, scratch_ns: str) -> list[str]:
    """Whether the kernel holds what the proxy wrote: ``intended_dump`` (``NftablesSyncer.dump()``)
    is loaded into a throwaway netns named ``scratch_ns`` and both listings are compared in
    ``canonical`` form. Returns the differences ([] = identical); the netns is always removed."""
    try:
        with netns.Runner(1) as runner:
            runner.run_new(scratch_ns, lambda: None)
        scratch = NftApplier(scratch_ns, applier.family)
        scratch.run(intended_dump)
        return diff_canonical(canonical(scratch.list_json()), canonical(applier.list_json()))
    finally:
        netns.delete(scratch_ns)


def existing_from_json(data: dict) -> Existing:
    chains, sets = set(), set()
    for obj in data.get("nftables", []):
        if "chain" in obj and names.is_service_chain(obj["chain"]["name"]):
            chains.add(obj["chain"]["name"])
        elif "set" in obj and names.is_affinity_set(obj["set"]["name"]):
            sets.add(obj["set"]["name"])
    return Existing(frozenset(chains), frozenset(sets))


def canonical(data: dict | None) -> list[str]:
    """A listing reduced to what a sync decides: no handles, elements sorted, and no entries
    of affinity sets (the packets, not the proxy, fill those)."""
    if not data:
        return []
    out = []
    for obj in data.get("nftables", []):
        if "metainfo" in obj:
            continue
        ((kind, body),) = obj.items()
        body = {k: v for k, v in body.items() if k != "handle"}
        if kind in ("set", "map"):
            if names.is_affinity_set(body["name"]):
                body.pop("elem", None)
            elif "elem" in body:
                body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        out.append(json.dumps({kind: body}, sort_keys=True))
    return sorted(out)


def diff_canonical(intended: list[str], kernel: list[str]) -> list[str]:
    """Lines only one side has, as ``- intended`` / ``+ kernel``."""
    a, b = set(intended), set(kernel)
    return [f"- {x}" for x in intended if x not in b] + [f"+ {x}" for x in kernel if x not in a]


_JUMP = re.compile(r"\s-[jg]\s+(KUBE-\S+)")


def iptables_cleanup_restore(table: str, save_text: str) -> tuple[str, int]:
    """``iptables-restore --noflush`` input removing kube-proxy's iptables-mode objects.

    Rules of other chains that jump to a ``KUBE-*`` chain are deleted (``-D``), then every
    ``KUBE-*`` chain is flushed (re-declared) and deleted (``-X``). Everything else, e.g.
    ``FLANNEL-*`` chains and their jumps, stays. Returns the text and the number of chains.
    """
    kube, deletes = [], []
    in_table = False
    for line in save_text.splitlines():
        if line.startswith("*"):
            in_table = line[1:].strip() == table
        elif not in_table:
            continue
        elif line.startswith(":KUBE-"):
            kube.append(line[1:].split()[0])
        elif line.startswith("-A ") and not line.startswith("-A KUBE-") and _JUMP.search(line):
            deletes.append("-D " + line[3:])
    if not kube:
        return "", 0
    lines = [f"*{table}", *deletes, *(f":{c} - [0:0]" for c in kube), *(f"-X {c}" for c in kube),
             "COMMIT"]
    return "\n".join(lines) + "\n", len(kube)

