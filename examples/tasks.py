"""Example tasks: the kind of work a web app hands to taskkernel (run by `make demo`)."""

from __future__ import annotations

import time

from kernel import App

# No URLs: the embedded broker and result backend, files under ./.taskkernel/
app = App("examples")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def resize_image(name: str, width: int) -> str:
    time.sleep(0.3)  # stands in for real image work
    return f"{name} resized to {width}px"


@app.task
def send_email(to: str, subject: str) -> str:
    time.sleep(0.1)
    return f"sent {subject!r} to {to}"


@app.task(bind=True, max_retries=5, default_retry_delay=0.5)
def call_flaky_api(self, fails_before_success: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Fails a few times, then works: each failure is retried after half a second."""
    if self.request.retries < fails_before_success:
        raise self.retry(exc=ConnectionError("upstream timed out"))
    return {"attempts": self.request.retries + 1}


@app.task
def crunch_numbers(n: int) -> int:
    return sum(i * i for i in range(n))


@app.task
def charge_card(amount: int) -> str:
    if amount <= 0:
        raise ValueError(f"cannot charge {amount}")
    return f"charged {amount}"
