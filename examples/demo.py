"""`make demo`: a worker on the embedded broker, a producer sending it work, then a warm stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    print("demo: starting a worker: kernel start -A tasks:app -c 4", flush=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "kernel", "start", "-A", "tasks:app", "-c", "4"],
        cwd=HERE,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    for line in worker.stderr:  # echo the worker's log until it says it is ready
        sys.stderr.write(line)
        if " ready" in line:
            break
        if worker.poll() is not None:
            return 1
    else:
        return 1

    def echo_worker() -> None:
        for line in worker.stderr:  # type: ignore[union-attr]
            sys.stderr.write(line)

    import threading

    threading.Thread(target=echo_worker, daemon=True).start()
    print("demo: running the producer: python producer.py", flush=True)
    code = subprocess.call([sys.executable, "producer.py"], cwd=HERE, env=env)
    time.sleep(0.2)
    print("demo: sending SIGTERM to the worker (warm shutdown)", flush=True)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    time.sleep(0.1)
    print(f"demo: worker exited with status {worker.returncode}", flush=True)
    return code or worker.returncode


if __name__ == "__main__":
    sys.exit(main())
