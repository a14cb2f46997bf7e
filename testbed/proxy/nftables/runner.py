"""Run nftables transactions in the calling process's network namespace.

Three ways, same input (``nft -f`` text) and same all-or-nothing semantics (``nfnl``'s
netlink batches first, see there; these two for listings and what it cannot compile):

- ``LibNft``: libnftables (the library the ``nft`` binary is a thin wrapper of, Debian's
  ``libnftables1``) loaded in-process through ctypes, one context kept for the proxy's life;
  each ``run`` is ``nft_run_cmd_from_buffer``: one netlink batch, i.e. one transaction. It
  saves a process start and the parsing of nft's own startup per sync;
- ``NftProcess``: ``nft -f -``, a child per call, where the library cannot be loaded.

``make_runner`` picks netlink, with the library as fallback when it loads. The context's netlink socket is opened in the
netns of the thread that creates it: create the runner inside the node's netns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading
from dataclasses import dataclass

from testbed import exec as ex
from testbed.proxy.nftables import names

_OUTPUT_TERSE = 1 << 11          # NFT_CTX_OUTPUT_TERSE (libnftables(3)): no set elements
_ERROR = re.compile(r":(\d+):\d+(?:-\d+)?: Error: (.*)")


class RunError(RuntimeError):
    """nft rejected a transaction (nothing of it applied) or could not be run."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


def parse_error(stderr: str, text: str = "") -> tuple[str, int | None]:
    """nft's first complaint (one line) and the input line it names, if any. nft names it by
    position for file input; for a buffer it only echoes the line, which is looked up in
    ``text``."""
    lines = stderr.splitlines()
    for i, ln in enumerate(lines):
        m = _ERROR.search(ln)
        if m:
            return m.group(2).strip(), int(m.group(1))
        if ln.startswith("Error: "):
            echoed = lines[i + 1] if i + 1 < len(lines) else ""
            where = text.split("\n").index(echoed) + 1 if echoed and echoed in text.split("\n") else None
            return ln[len("Error: "):].strip(), where
    lines = [ln.strip() for ln in lines if ln.strip()]
    return (lines[0] if lines else "no error output"), None


def _objects(listing: str, family: str, kind: str) -> list[str]:
    """Names of the ``kind`` objects of our table in a ``list chains``/``list sets`` output."""
    out, ours = [], False
    for line in listing.splitlines():
        if line.startswith("table "):
            ours = line == f"table {family} {names.TABLE} {{"
        elif ours:
            m = re.match(rf"\s+{kind} (\S+) {{", line)
            if m:
                out.append(m.group(1).strip('"'))
    return out


@dataclass(frozen=True)
class Existing:
    """Service chains and affinity sets the kernel holds (a full sync flushes/deletes extras)."""

    chains: frozenset[str]
    sets: frozenset[str]


def existing_in(chains_listing: str, sets_listing: str, family: str = "ip") -> Existing:
    """Our service chains and affinity sets in ``nft list chains`` / ``nft -t list sets`` output."""
    chains = _objects(chains_listing, family, "chain")
    sets = _objects(sets_listing, family, "set")
    return Existing(frozenset(c for c in chains if names.is_service_chain(c)),
                    frozenset(x for x in sets if names.is_affinity_set(x)))


class NftRunner:
    kind = "abstract"

    def run(self, text: str) -> None:
        """One transaction; raises ``RunError`` if the kernel (or nft) rejected it."""
        raise NotImplementedError

    def list(self, command: str) -> str | None:
        """Output of one terse ``nft`` listing command (no set elements); None if the object
        does not exist."""
        raise NotImplementedError

    def existing(self, family: str = "ip") -> Existing:
        """Names of our service chains and affinity sets. Only ``list chains`` and terse
        ``list sets``: anything that lists elements (``list table``, ``list tables``, a
        non-terse ``list sets``) makes nft fetch every anonymous map's elements, one request
        per map, each a linear search of the table's sets in the kernel (7 s at 5k Services)."""
        return existing_in(self.list(f"list chains {family}") or "", self.list(f"list sets {family}") or "", family)

    def table_exists(self, family: str = "ip") -> bool:
        # the table always has sets (cluster-ips, ...): listing them is the cheap probe
        return f"table {family} {names.TABLE} {{" in (self.list(f"list sets {family}") or "")

    def close(self) -> None:
        return None


class NftProcess(NftRunner):
    kind = "nft"

    def run(self, text: str) -> None:
        if not text:
            return
        r = ex.run(["nft", "-f", "-"], input=text, check=False)
        if r.returncode != 0:
            raise RunError(*parse_error(r.stderr))

    def list(self, command: str) -> str | None:
        r = ex.run(["nft", "-t", *command.split()], check=False)
        if r.returncode != 0:
            if "No such file or directory" in r.stderr:
                return None
            raise RunError(f"nft {command}: {parse_error(r.stderr)[0]}")
        return r.stdout


class LibNft(NftRunner):
    kind = "libnftables"

    def __init__(self, lib: ctypes.CDLL):
        self._lib = lib
        self._lock = threading.Lock()     # the loop's sync thread and its monitor share it
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        lib.nft_ctx_output_set_flags(self._ctx, lib.nft_ctx_output_get_flags(self._ctx) | _OUTPUT_TERSE)

    @classmethod
    def load(cls) -> "LibNft":
        lib = ctypes.CDLL(ctypes.util.find_library("nftables") or "libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
            getattr(lib, fn).restype = ctypes.c_char_p
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_output_get_flags.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_get_flags.restype = ctypes.c_uint
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        return cls(lib)

    def _cmd(self, text: str) -> tuple[int, str, str]:
        lib, ctx = self._lib, self._ctx
        with self._lock:
            rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
            # reading a buffer also resets it for the next command
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
        return rc, out, err

    def run(self, text: str) -> None:
        if not text:
            return
        rc, _, err = self._cmd(text)
        if rc != 0:
            raise RunError(*parse_error(err, text))

    def list(self, command: str) -> str | None:
        rc, out, err = self._cmd(command)
        if rc != 0:
            if "No such file or directory" in err:
                return None
            raise RunError(f"nft {command}: {parse_error(err)[0]}")
        return out

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None


def make_runner() -> NftRunner:
    """Netlink batches (``nfnl``) with libnftables (else ``nft``) for listings and for any text
    the netlink compiler does not know."""
    try:
        fallback: NftRunner = LibNft.load()
    except (OSError, AttributeError):
        fallback = NftProcess()
    from testbed.proxy.nftables.nfnl import NetlinkRunner     # nfnl imports this module
    try:
        return NetlinkRunner(fallback)
    except OSError:
        return fallback
