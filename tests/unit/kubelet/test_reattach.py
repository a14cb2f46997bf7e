"""What a restarted kubelet reads of a sandbox it did not start, and where binds may mount."""

import os
import signal

import pytest

from testbed import sandbox
from testbed.kubelet.sandbox import Adopted


@pytest.mark.parametrize("written, rc", [("0", 0), ("3", 3), ("137", -signal.SIGKILL), ("143", -signal.SIGTERM),
                                         ("", -signal.SIGKILL), (None, -signal.SIGKILL)])
def test_an_adopted_sandbox_reports_its_status_as_popen_would(tmp_path, written, rc):
    path = tmp_path / "c.status"
    if written is not None:
        path.write_text(written)
    assert Adopted(1, str(path)).wait() == rc


def test_a_bind_target_is_made_only_inside_a_hidden_directory(tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    src = tmp_path / "api.sock"
    src.write_text("")
    fd = os.open(src, os.O_PATH)
    try:
        dst = hidden / "c" / "api.sock"
        sandbox._bind_target(fd, str(dst), [str(hidden)])
        assert dst.is_file()
        with pytest.raises(OSError, match="does not exist"):
            sandbox._bind_target(fd, str(tmp_path / "elsewhere" / "api.sock"), [str(hidden)])
        assert not (tmp_path / "elsewhere").exists()
    finally:
        os.close(fd)
