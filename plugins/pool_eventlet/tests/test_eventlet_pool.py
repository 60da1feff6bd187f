"""The eventlet pool on a hub of its own in this unpatched process: the shared green pool tests."""

from kernel_pool_green.testing.pool_tests import GreenPoolTests


class TestEventletPool(GreenPoolTests):
    pass
