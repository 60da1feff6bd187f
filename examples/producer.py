"""Sends the example tasks and prints each result as it arrives."""

from __future__ import annotations

import time

from tasks import add, call_flaky_api, charge_card, crunch_numbers, resize_image, send_email


def main() -> None:
    began = time.monotonic()
    jobs = [
        ("add(2, 3)", add.delay(2, 3)),
        ("resize_image('cat.png', 640)", resize_image.delay("cat.png", 640)),
        (
            "send_email (in 2 s)",
            send_email.apply_async(("ada@example.com", "Welcome"), countdown=2),
        ),
        ("call_flaky_api(fails 2x)", call_flaky_api.delay(2)),
        ("crunch_numbers(1_000_000)", crunch_numbers.delay(1_000_000)),
        ("charge_card(-5)", charge_card.delay(-5)),
    ]
    jobs += [(f"add({i}, {i})", add.delay(i, i)) for i in range(10)]
    print(f"producer: sent {len(jobs)} tasks", flush=True)
    pending = dict(jobs)
    while pending:
        for label, result in list(pending.items()):
            if not result.ready():
                continue
            del pending[label]
            elapsed = time.monotonic() - began
            try:
                value = result.get()
            except Exception as exc:
                print(f"producer: {elapsed:5.2f}s  {label:<30} FAILED: {exc!r}", flush=True)
            else:
                print(f"producer: {elapsed:5.2f}s  {label:<30} -> {value!r}", flush=True)
        time.sleep(0.05)
    print("producer: all results in", flush=True)


if __name__ == "__main__":
    main()
