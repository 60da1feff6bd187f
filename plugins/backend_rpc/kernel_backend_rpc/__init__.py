"""The rpc:// result backend: each result is a message to the reply queue of the client that sent
the task (its `reply_to`), over the app's broker; nothing is stored anywhere else."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from kernel import hookimpl
from kernel.plugin import (
    READY_STATES,
    SUCCESS,
    BaseBackend,
    Broker,
    Message,
    Outgoing,
    QueueSpec,
    Stored,
)

__all__ = ["RPCBackend"]


class RPCBackend(BaseBackend):
    """Workers publish; each client thread consumes its own reply queue (named by its oid) and
    keeps the latest state per task. As in Celery, a result can be read only by the thread that
    sent the task (its reply queue), chords are not supported, and groups cannot be saved."""

    def __init__(self, app: Any, url: str) -> None:
        super().__init__(app, url)
        self.persistent = bool(app.conf.get("result_persistent", False))
        self._local = threading.local()

    def reply_queue(self, oid: str) -> QueueSpec:
        """Declared as Celery declares it, so either side may create it first."""
        arguments = {"x-expires": int(self.expires * 1000)} if self.expires else None
        return QueueSpec(oid, durable=True, auto_delete=True, arguments=arguments)

    # -- the worker's side ------------------------------------------------------------------
    def store(self, items: Sequence[Stored]) -> None:
        """Each result as a message to its client's reply queue, the batch in one publish."""
        delivery_mode = 2 if self.persistent else 1
        replies = [
            Outgoing(
                item.data,
                item.reply_to,
                "",
                {},
                {"correlation_id": item.task_id, "delivery_mode": delivery_mode},
                self.content_type,
                self.content_encoding,
                [self.reply_queue(item.reply_to)],
            )
            for item in items
            if item.reply_to  # nobody to reply to: send_task from a client that set no reply_to
        ]
        if replies:
            self.app.broker.publish(replies)

    # -- the client's side ------------------------------------------------------------------
    def _state(self) -> tuple[Broker, dict[str, dict[str, Any]]]:
        consumer = getattr(self._local, "consumer", None)
        if consumer is None:
            results: dict[str, dict[str, Any]] = {}
            consumer = self.app.open_broker(self.app.pm)
            consumer.connect()
            consumer.consume(
                [self.reply_queue(self.app.oid)],
                lambda message: self._received(results, message),
                0,
            )
            self._local.consumer, self._local.results = consumer, results
            self._local.forgotten = set()
        return consumer, self._local.results

    def _received(self, results: dict[str, dict[str, Any]], message: Message) -> None:
        try:
            meta = self.decode(message.body)
        except Exception:
            message.ack()  # not a result: nothing else would ever read it
            return
        task_id = str(message.properties.get("correlation_id") or meta.get("task_id"))
        if task_id in self._local.forgotten:
            message.ack()
            return
        current = results.get(task_id)
        if current is None or current.get("status") != SUCCESS:
            results[task_id] = meta
        message.ack()

    def get(self, task_id: str) -> dict[str, Any] | None:
        consumer, results = self._state()
        consumer.poll(0)
        if task_id not in results:
            # a broker that pushes (AMQP) may still have a just-sent result on the wire
            consumer.poll(0.05)
        return results.get(task_id)

    def wait_for(
        self, task_id: str, *, deadline: float | None, interval: float
    ) -> dict[str, Any] | None:
        consumer, results = self._state()
        while True:
            meta = results.get(task_id)
            if meta is not None and meta.get("status") in READY_STATES:
                return meta
            remaining = interval if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return None
            consumer.poll(min(interval, remaining))

    def forget(self, task_id: str) -> None:
        """Drop what arrived for the task, and what arrives for it later."""
        consumer, results = self._state()
        consumer.poll(0)
        results.pop(task_id, None)
        self._local.forgotten.add(task_id)

    def close(self) -> None:
        consumer = getattr(self._local, "consumer", None)
        if consumer is not None:
            consumer.close()
            self._local.consumer = None


@hookimpl
def kernel_result_backend(url: str, app: Any) -> RPCBackend | None:
    return RPCBackend(app, url) if url.split("://", 1)[0].lower() == "rpc" else None
