"""The worker engine: the consumer, running tasks in a pool, the core's steps, pool contract."""
