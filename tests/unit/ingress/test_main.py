"""``python -m testbed.ingress``: bad arguments get one clear line, not a traceback."""

from __future__ import annotations

import pytest

from testbed.ingress.__main__ import main


@pytest.mark.parametrize("argv,message", [
    (["--api", "/nonexistent.sock", "--pod", "default", "--dir", "/tmp"],
     "--pod: 'default' is not NAMESPACE/NAME"),
    (["--api", "/nonexistent.sock", "--pod", "ingress-nginx/ctl", "--dir", "/tmp"],
     "--api: /nonexistent.sock does not exist (the API server's unix socket)"),
])
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"python -m testbed.ingress: error: {message}"
