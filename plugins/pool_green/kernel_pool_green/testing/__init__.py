"""Tests every green pool plugin subclasses, so that none is written twice.

`pool_tests` (its pool on an unpatched hub), `contracts` (the pool contracts, all of them when
patched) and `worker_tests` (`kernel start -P NAME` on real servers, with `tasks` as its app).

Each class finds its pool through a `green_pool` fixture naming it ("gevent"): define it once,
session-scoped, in the plugin's tests/conftest.py."""
