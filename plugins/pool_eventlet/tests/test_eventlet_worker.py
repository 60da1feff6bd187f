"""`kernel start -P eventlet` on real servers, and its contracts patched: the shared tests."""

from kernel_pool_green.testing.worker_tests import GreenWorkerTests


class TestEventletWorker(GreenWorkerTests):
    pass
