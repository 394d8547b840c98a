"""Suite-wide rule: tests run with one torch thread and one BLAS thread (``workbench.testing.one_thread``)."""

import pytest

from workbench.testing import one_thread as _one_thread


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    with _one_thread():
        yield
