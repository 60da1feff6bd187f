"""Fixtures for the AMQP broker tests: the server, unique queues, a breakable proxy, a vhost."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from kombu.connection import Connection

from kernel.testing.helpers import require_server

HOST, PORT = "127.0.0.1", 5672
URL = f"amqp://guest:guest@{HOST}:{PORT}//"


@pytest.fixture
def amqp_url() -> str:
    require_server("RabbitMQ", HOST, PORT)
    return URL


def delete_queues(names: list[str], url: str = URL) -> None:
    """Delete queues and the same-named exchanges their Celery-style declaration made."""
    with Connection(url, connect_timeout=5) as conn:
        for name in names:
            channel = conn.channel()
            try:
                channel.queue_delete(name)
                channel.exchange_delete(name)
            finally:
                channel.close()


@pytest.fixture
def new_queue(amqp_url: str) -> Iterator[Callable[[], str]]:
    """Make unique queue names; the queues are deleted after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(f"kt-amqp-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield make
    delete_queues(made)


class Proxy:
    """A TCP proxy to RabbitMQ that can be cut: `close()` drops every connection and refuses
    new ones (nothing listens on the port), `open()` listens on the same port again."""

    def __init__(self, upstream: tuple[str, int] = (HOST, PORT)) -> None:
        self.upstream = upstream
        probe = socket.socket()
        probe.bind((HOST, 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.url = f"amqp://guest:guest@{HOST}:{self.port}//"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            _shut(listener)  # wakes the thread blocked in accept()
        for sock in sockets:
            _shut(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # closed meanwhile
                    _shut(client)
                    _shut(server)
                    return
                self._sockets.update((client, server))
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(src)
            _shut(dst)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@pytest.fixture
def proxy(amqp_url: str) -> Iterator[Proxy]:
    proxy = Proxy()
    yield proxy
    proxy.close()


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


class VHost:
    """A vhost of its own on the real server."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"amqp://guest:guest@{HOST}:{PORT}/{name}"

    def close_all_connections(self, why: str) -> None:
        rabbitmqctl("close_all_connections", "--vhost", self.name, why)


@pytest.fixture
def vhost(amqp_url: str) -> Iterator[VHost]:
    """Closing the connections of its own vhost leaves everybody else's alone."""
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH")
    name = f"kt-amqp-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield VHost(name)
    finally:
        rabbitmqctl("delete_vhost", name)  # with its queues and exchanges
