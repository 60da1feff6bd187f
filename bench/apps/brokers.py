"""The brokers and Redis databases the benchmark runs on, and how each is emptied."""

# kombu ships without type annotations (nor explicit exports).
# mypy: disable-error-code="no-untyped-call, attr-defined"

from __future__ import annotations

import pathlib
import shutil
import tempfile
from dataclasses import dataclass, field

import redis
from kombu import Connection

REDIS_HOST = "127.0.0.1:6379"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
OWNER_KEY = "bench:owner"
OWNER = "taskkernel bench/compare.py"


class DatabaseInUse(RuntimeError):
    pass


@dataclass(frozen=True)
class RedisDbs:
    """Databases of our own: broker, results, markers. Emptied at will, so never shared."""

    broker: int
    results: int
    marks: int

    def url(self, db: int) -> str:
        return f"redis://{REDIS_HOST}/{db}"

    def client(self, db: int) -> redis.Redis:
        return redis.Redis.from_url(self.url(db))

    def all(self) -> tuple[int, ...]:
        return (self.broker, self.results, self.marks)

    def claim(self) -> None:
        """Refuse databases holding keys that are not ours; then mark them all as ours."""
        for db in set(self.all()):
            client = self.client(db)
            if client.dbsize() and client.get(OWNER_KEY) is None:
                raise DatabaseInUse(
                    f"Redis db {db} holds keys this benchmark did not write; "
                    "pick free ones with --redis-dbs BROKER,RESULTS,MARKS"
                )
        for db in set(self.all()):
            self.client(db).set(OWNER_KEY, OWNER)

    def flush(self, *dbs: int) -> None:
        for db in dbs:
            client = self.client(db)
            client.flushdb()
            client.set(OWNER_KEY, OWNER)

    def release(self) -> None:
        for db in set(self.all()):
            self.client(db).flushdb()


@dataclass
class Target:
    """One broker kind with the URLs both systems use on it."""

    kind: str  # "redis", "amqp" or "embedded"
    dbs: RedisDbs
    tmp: pathlib.Path = field(init=False)  # the embedded broker's files

    def __post_init__(self) -> None:
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"bench-{self.kind}-"))

    @property
    def broker_url(self) -> str:
        if self.kind == "redis":
            return self.dbs.url(self.dbs.broker)
        if self.kind == "amqp":
            return AMQP_URL
        return f"embedded:///{self.tmp}/broker.db"  # the fourth slash: an absolute path

    @property
    def backend_url(self) -> str:
        if self.kind == "embedded":
            return f"embedded:///{self.tmp}/results.db"
        return self.dbs.url(self.dbs.results)

    def queue_length(self, queue: str) -> int | None:
        """Messages left in the queue (None where it cannot be asked cheaply)."""
        if self.kind == "redis":
            return int(self.dbs.client(self.dbs.broker).llen(queue))
        if self.kind == "amqp":
            with Connection(AMQP_URL) as conn:
                try:
                    _, count, _ = conn.default_channel.queue_declare(queue, passive=True)
                except Exception:  # the queue is gone: nothing left in it
                    return 0
                return int(count)
        return None

    def results_stored(self) -> int | None:
        if self.kind == "embedded":
            return None
        return int(self.dbs.client(self.dbs.results).dbsize()) - 1  # minus the owner key

    def clear(self, queue: str) -> None:
        """Remove the queue and everything both systems left for it, results included."""
        if self.kind == "redis":
            self.dbs.flush(self.dbs.broker, self.dbs.results)
        elif self.kind == "amqp":
            _delete_amqp(queue)
            self.dbs.flush(self.dbs.results)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir()

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _delete_amqp(queue: str) -> None:
    """Delete the queue and the direct exchange of the same name Celery declares for it."""
    with Connection(AMQP_URL) as conn:
        channel = conn.default_channel
        for delete in (channel.queue_delete, channel.exchange_delete):
            try:
                delete(queue)
            except Exception:  # already gone; the channel is closed by the error, reopen
                channel = conn.channel()
