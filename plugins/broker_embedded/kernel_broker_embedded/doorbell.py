"""Cross-process wake-ups: waiting connections bind Unix datagram sockets, publishers ring them.

The sockets live in a directory derived from the database path, so every process using
the same file finds the same listeners without asking the database.  A datagram's
content is irrelevant; its arrival means "something changed, look again".
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import secrets
import socket
import tempfile

# sun_path holds 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_NAME_ROOM = 32


def bell_dir(db_path: pathlib.Path) -> pathlib.Path:
    """Directory of listener sockets for the database at (resolved) ``db_path``."""
    beside = db_path.with_name(db_path.name + ".bells")
    if len(os.fsencode(str(beside))) + _NAME_ROOM <= _MAX_SOCKET_PATH:
        return beside
    # Too long for sun_path: use a short per-user directory keyed by the database path.
    digest = hashlib.sha256(os.fsencode(str(db_path))).hexdigest()[:20]
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return pathlib.Path(tempfile.gettempdir()) / f"taskkernel-{uid}" / digest


def _is_stale(path: str) -> bool:
    """True if nothing is bound at ``path`` any more (its process died without cleaning up)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class Doorbell:
    """The listening side: a bound, non-blocking datagram socket."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._sweep()
        self.path = str(directory / f"{os.getpid()}-{secrets.token_hex(6)}.sock")
        self.name = os.path.basename(self.path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)
        self._sock.bind(self.path)

    def _sweep(self) -> None:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.directory, name)
            if name.endswith(".sock") and _is_stale(path):
                _unlink(path)

    def fileno(self) -> int:
        return self._sock.fileno()

    def clear(self) -> bool:
        """Discard pending rings; True if there were any."""
        rang = False
        while True:
            try:
                self._sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return rang
            except OSError:
                return rang
            rang = True

    def close(self) -> None:
        self._sock.close()
        _unlink(self.path)


class Ringer:
    """The publishing side: after a commit, send one byte to every listener.

    Costs one ``listdir`` when nobody listens.  A full receive queue means that
    listener has unread rings already, so the datagram can be dropped.
    """

    def __init__(self, directory: pathlib.Path, skip: str | None = None) -> None:
        self.directory = str(directory)
        self.skip = skip
        self._sock: socket.socket | None = None

    def ring(self) -> None:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        for name in names:
            if name == self.skip or not name.endswith(".sock"):
                continue
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)
            path = os.path.join(self.directory, name)
            try:
                self._sock.sendto(b"\0", path)
            except ConnectionRefusedError:
                # Nobody bound there: its process died without cleaning up.
                _unlink(path)
            except OSError:
                # EAGAIN: its queue is full of unread rings already; ENOENT: it just left.
                # Anything else costs that listener at most its safety-net sleep.
                pass

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
