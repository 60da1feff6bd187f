"""The base of the green-thread pools: one pool, one step and one set of tests.

Each library (gevent, eventlet) gives a small adapter, a `GreenLibrary`.

Importing this package loads no green library and nothing of the worker, so a plugin built on
it stays light to import before the standard library is patched. Its modules load on use:
`kernel_pool_green.library` (the adapter contract), `.pool` (GreenPool), `.step`
(GreenPoolStep), `.testing` (test classes a green plugin subclasses).
"""
