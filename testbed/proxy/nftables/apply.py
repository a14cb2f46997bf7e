"""Apply nftables-mode transactions inside a node's network namespace.

Every kernel call is one ``nft`` process started from a thread that has entered the given
netns (``testbed.netns``): ``nft -f -``, ``nft -j list table`` to read back. Used from outside
the proxy (``testbed rules --check``, tests); the proxy itself runs ``runner``. Nothing outside
``table ip kube-proxy`` is touched.
"""

from __future__ import annotations

import json

from testbed import exec as ex
from testbed import netns
from testbed.proxy.nftables import names
from testbed.proxy.nftables.runner import Existing, existing_in

NFT = "nft"


class NftError(RuntimeError):
    """An ``nft`` call failed; the message is one line: what ran, where, and nft's complaint."""


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    err = next((ln for ln in lines if ln.startswith("Error") or "Error:" in ln), None)
    return err or (lines[0] if lines else "no error output")


def _run(ns: str | None, argv: list[str], stdin: str | None = None) -> ex.Result:
    return ex.run(argv, netns=ns, input=stdin, check=False)


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
        """Names of our service chains and affinity sets in the kernel (for a full sync), from
        listings that print no set elements (see ``runner.NftRunner.existing``)."""
        listings = []
        for what in ("chains", "sets"):
            r = _run(self.ns, [NFT, "-t", "list", what, self.family])
            if r.returncode != 0:
                raise NftError(f"nft list {what} in {self.where} failed: {_first_error(r.stderr)}")
            listings.append(r.stdout)
        return existing_in(*listings, self.family)

    def delete_table(self) -> None:
        """Remove the whole table (``add`` first, so a missing table is not an error)."""
        self.run(f"add table {self.family} {names.TABLE}\n"
                 f"delete table {self.family} {names.TABLE}\n")

def check(applier: NftApplier, intended: str | list[str], scratch_ns: str) -> tuple[list[str], int]:
    """Whether the kernel holds what the proxy wrote: ``intended`` (``NftablesSyncer.dump()``, or
    the proxy's transactions in order, each run as its own transaction) is loaded into a throwaway
    netns named ``scratch_ns`` and both listings are compared in ``canonical`` form. Returns the
    differences ([] = identical) and the number of objects intended; the netns is always removed."""
    try:
        with netns.Runner(1) as runner:
            runner.run_new(scratch_ns, lambda: None)
        scratch = NftApplier(scratch_ns, applier.family)
        for n, text in enumerate([intended] if isinstance(intended, str) else intended, 1):
            try:
                scratch.run(text)
            except NftError as exc:
                raise NftError(f"intended transaction {n} does not apply: {exc}") from None
        want = canonical(scratch.list_json())
        return diff_canonical(want, canonical(applier.list_json())), len(want)
    finally:
        netns.delete(scratch_ns)


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
