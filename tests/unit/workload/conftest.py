import shutil
import tempfile

import pytest

from testbed.workload import WorkloadServer


@pytest.fixture
def server():
    srv = WorkloadServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def short_dir():
    # unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer
    d = tempfile.mkdtemp(prefix="tbwl-")
    yield d
    shutil.rmtree(d, ignore_errors=True)
