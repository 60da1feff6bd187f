"""The eventlet pool passes the pool and time-limit contracts (every test of them when patched)."""

from kernel_pool_green.testing.contracts import GreenPoolContract, GreenTimeLimitContract


class TestEventletPoolContract(GreenPoolContract):
    pass


class TestEventletTimeLimits(GreenTimeLimitContract):
    pass
