"""The ``testbed`` command: thin verbs over the library, one module per area.

Each area module has plain functions (one per verb: parse arguments, call the library, print)
and a ``register(app)`` that adds them. The areas are listed here, so a verb module that fails
to import stops the command instead of silently losing its verbs."""

from __future__ import annotations

import sys

import typer

from ..errors import TestbedError
from . import cluster, debug, kubeconfig, objects, proxy, troubleshoot, verify, workloads
from .common import err

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="A Kubernetes Service-networking lab in Linux network namespaces.")

# the order of `testbed --help`
AREAS = (cluster, kubeconfig, objects, workloads, debug, proxy, verify, troubleshoot)
for _area in AREAS:
    _area.register(app)


def main() -> None:
    from ..apiserver.errors import ApiError

    try:
        rc = app(standalone_mode=False)  # click returns the code of typer.Exit in this mode
        if isinstance(rc, int) and rc:
            sys.exit(rc)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TestbedError as exc:
        _error(str(exc))
        sys.exit(exc.exit_code)
    except ApiError as exc:  # the API server's own words, like kubectl prints them
        _error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except (OSError, ValueError) as exc:
        _error(str(exc))
        sys.exit(2 if isinstance(exc, ValueError) else 1)
    except Exception as exc:  # usage errors from the command-line parser
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
