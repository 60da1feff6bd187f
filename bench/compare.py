"""Our worker against Celery 5.7's, side by side, in one run: one table and one JSON file.

    python bench/compare.py [--n 10000] [--brokers redis,amqp,embedded]
                            [--pools solo,threads,prefork] [--concurrency 2] [--repeat 3]
                            [--roundtrips 1000] [--json bench/results.json] [--quick]
                            [--systems ours]

Both workers run on the same broker, pool kind, concurrency and N, alternately (ours, Celery,
ours, Celery, ...) so that drift of the machine hits both. Per broker and pool it measures:

* drain rate: N no-op `bench.add` pre-filled into an empty queue, then the worker started;
  a marker task before and after them records the time (and CPU times) where it runs, so
  tasks/s = N / (last - first), the same method for both systems; results ignored and stored;
* worker CPU per task (the worker's process tree, from /proc), broker server CPU per task,
  Redis commands per task (CONFIG RESETSTAT at the first marker, INFO commandstats at the
  last), peak RSS of the worker tree (VmHWM);
* enqueue rate from one client (delay one by one; our delay_many when it exists), round trip
  of `add.delay(2, 2).get()` on a warm worker (p50, p99), idle RSS of a solo worker, and the
  raw limits of the broker and client libraries.

The embedded broker is ours alone. Celery on RabbitMQ also runs in its best tuned form (solo,
deep prefetch, no gossip/mingle/heartbeat). Figures flagged `busy` were taken while other
processes on the machine used more than BUSY_CORES of CPU; `shared-redis` means other Redis
clients were active, which also inflates the commands-per-task count.

N defaults to 10,000 so that a full run takes about 17 minutes on 2 cores (`--n 20000`: about
half an hour). `--quick` (N = 1,000, one run) is a smoke test: at that N, start-up work of a
worker (Celery's mingle and gossip) overlaps the drain and CPU times are read in 10 ms ticks.
Drain runs need no ready line: the first marker starts the clock wherever the worker is; the
round trip starts timing after a first call has been answered; idle RSS is read after the
worker's ready line (logged at -l info by both systems).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

APPS_DIR = pathlib.Path(__file__).resolve().parent / "apps"
sys.path.insert(0, str(APPS_DIR))  # the bench apps and helpers, imported as the workers do

import machine  # noqa: E402
import prefill  # noqa: E402
import procs  # noqa: E402
import raw  # noqa: E402
import report  # noqa: E402
from benchenv import done_key, marks_key  # noqa: E402
from brokers import AMQP_URL, DatabaseInUse, RedisDbs, Target  # noqa: E402
from workers import Processes, Worker, WorkerFailed, WorkerSpec, bench_env  # noqa: E402

Sample = dict[str, Any]
BROKERS = ("redis", "amqp", "embedded")
POOLS = ("solo", "threads", "prefork")
RESULTS = ("ignored", "stored")
SECTIONS = ("idle", "drain", "enqueue", "roundtrip", "raw")
SYSTEMS = ("ours", "celery")
BUSY_CORES = 0.25  # others' CPU during a run above this share of a core flags the sample
QUICK = {"n": 1000, "repeat": 1, "roundtrips": 200}
IDLE_SETTLE = 2.0  # seconds after the ready line before idle RSS is read
CLIENT_TIMEOUT = 600.0


@dataclass(frozen=True)
class Plan:
    n: int
    brokers: tuple[str, ...]
    pools: tuple[str, ...]
    results: tuple[str, ...]
    sections: tuple[str, ...]
    systems: tuple[str, ...]
    concurrency: int
    repeat: int
    roundtrips: int
    json_path: pathlib.Path
    dbs: RedisDbs

    @property
    def drain_timeout(self) -> float:
        return 60.0 + self.n / 100.0  # Celery's slowest setting here stays well above 100/s


def _names(allowed: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return names

    return parse


def _dbs(text: str) -> RedisDbs:
    try:
        broker, results, marks = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("expected three numbers: BROKER,RESULTS,MARKS") from None
    if len({broker, results}) < 2:
        raise argparse.ArgumentTypeError("the broker and results databases must differ")
    return RedisDbs(broker, results, marks)


def parse_args(argv: Sequence[str] | None = None) -> Plan:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=10_000, help="tasks per drain/enqueue run")
    p.add_argument("--brokers", type=_names(BROKERS), default=BROKERS)
    p.add_argument("--pools", type=_names(POOLS), default=POOLS)
    p.add_argument("--results", type=_names(RESULTS), default=RESULTS)
    p.add_argument("--only", type=_names(SECTIONS), default=SECTIONS, help="sections to run")
    p.add_argument(
        "--systems", type=_names(SYSTEMS), default=SYSTEMS, help="ours alone: a quick look"
    )
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="runs per system; medians reported")
    p.add_argument("--roundtrips", type=int, default=1000)
    p.add_argument("--json", type=pathlib.Path, default=APPS_DIR.parent / "results.json")
    p.add_argument("--redis-dbs", type=_dbs, default="6,7,2", metavar="BROKER,RESULTS,MARKS")
    p.add_argument("--quick", action="store_true", help="smoke run: small N, one repeat")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    return Plan(
        n=args.n,
        brokers=args.brokers,
        pools=args.pools,
        results=args.results,
        sections=args.only,
        systems=args.systems,
        concurrency=args.concurrency,
        repeat=args.repeat,
        roundtrips=args.roundtrips,
        json_path=args.json,
        dbs=args.redis_dbs,
    )


def specs_for(kind: str, pool: str, plan: Plan) -> list[WorkerSpec]:
    """The systems compared on one broker and pool, in the order they alternate."""
    specs = [WorkerSpec("ours", pool, plan.concurrency)]
    if kind == "embedded" or "celery" not in plan.systems:
        return specs
    specs.append(WorkerSpec("celery", pool, plan.concurrency))
    tuned_pool = "solo" if "solo" in plan.pools else plan.pools[0]
    if kind == "amqp" and pool == tuned_pool:
        specs.append(WorkerSpec("celery", "solo", 1, tuned=True))
    return specs


class Bench:
    def __init__(self, plan: Plan, processes: Processes, logs: pathlib.Path) -> None:
        self.plan = plan
        self.procs = processes
        self.logs = logs
        self.targets = {kind: Target(kind, plan.dbs) for kind in plan.brokers}
        self.marks = plan.dbs.client(plan.dbs.marks)
        self.samples: dict[str, list[Sample]] = {s: [] for s in SECTIONS}
        self.done = 0

    # -- plumbing --------------------------------------------------------------------------
    def env(self, target: Target, queue: str, ignore: bool) -> dict[str, str]:
        return bench_env(
            {
                "BENCH_BROKER": target.broker_url,
                "BENCH_BACKEND": target.backend_url,
                "BENCH_QUEUE": queue,
                "BENCH_IGNORE_RESULT": "1" if ignore else "0",
                "BENCH_MARKS": self.plan.dbs.url(self.plan.dbs.marks),
            }
        )

    def start(
        self, spec: WorkerSpec, target: Target, queue: str, ignore: bool, level: str
    ) -> Worker:
        run = queue.rsplit(".", 1)[-1]
        log = self.logs / f"{spec.label.replace(' ', '-')}-{run}.log"
        return self.procs.start(
            spec.argv(queue, f"bench-{run}", level), self.env(target, queue, ignore), log
        )

    def client(self, env: dict[str, str], *args: str) -> dict[str, Any]:
        """Run client.py in its own process; its last stdout line is a JSON object."""
        out = subprocess.run(
            [sys.executable, str(APPS_DIR / "client.py"), *args],
            cwd=APPS_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
        )
        if out.returncode:
            raise WorkerFailed(f"client.py {' '.join(args)} failed:\n{out.stderr[-2000:]}")
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    def progress(self, section: str, sample: Sample, summary: str) -> None:
        self.done += 1
        keys = ("broker", "pool", "results", "system", "test")
        label = " ".join(str(sample[k]) for k in keys if k in sample)
        print(f"[{self.done:3d}] {section:9} {label}: {summary}", file=sys.stderr, flush=True)

    @contextmanager
    def recording(self, section: str, sample: Sample) -> Iterator[Sample]:
        """Collect one sample; a failed run is recorded with its error and the bench goes on."""
        try:
            yield sample
        except (WorkerFailed, subprocess.TimeoutExpired, OSError, ValueError) as exc:
            sample["error"] = str(exc)
            sample.setdefault("flags", []).append("error")
            self.progress(section, sample, "FAILED: " + str(exc).splitlines()[0])
        self.samples[section].append(sample)

    # -- drain ------------------------------------------------------------------------------
    def drain(self) -> None:
        for kind in self.plan.brokers:
            for pool in self.plan.pools:
                for results in self.plan.results:
                    for repeat in range(self.plan.repeat):
                        for spec in specs_for(kind, pool, self.plan):
                            self.drain_once(self.targets[kind], spec, results, repeat)

    def drain_once(self, target: Target, spec: WorkerSpec, results: str, repeat: int) -> None:
        sample: Sample = {
            "broker": target.kind,
            "pool": spec.pool,
            "results": results,
            "system": spec.label,
            "repeat": repeat,
            "n": self.plan.n,
        }
        run = uuid.uuid4().hex[:10]
        queue = f"bench.{run}"
        with self.recording("drain", sample):
            try:
                self._drain(target, spec, results, run, queue, sample)
            finally:
                self.marks.delete(marks_key(run), done_key(run))
                target.clear(queue)
            self.progress("drain", sample, _drain_summary(sample))

    def _drain(
        self, target: Target, spec: WorkerSpec, results: str, run: str, queue: str, sample: Sample
    ) -> None:
        target.clear(queue)
        ignore = results == "ignored"
        started = time.monotonic()
        self.fill(target, queue, run, ignore)
        sample["prefill_seconds"] = time.monotonic() - started
        worker = self.start(spec, target, queue, ignore, "warning")
        try:
            self.wait_done(run, worker)
            sample["peak_rss_mib"] = procs.tree_peak_rss_kib(worker.pid) / 1024
        finally:
            sample["exit_status"], sample["stop_seconds"] = worker.stop()
        marks = self.marks.hgetall(marks_key(run))
        sample.update(drain_figures(marks, self.plan, target.kind, worker.started_at))
        sample["left_in_queue"] = target.queue_length(queue)
        if not ignore:
            sample["results_stored"] = target.results_stored()
        sample["flags"] = drain_flags(sample, self.plan.n)

    def fill(self, target: Target, queue: str, run: str, ignore: bool) -> None:
        if target.kind == "embedded":
            self.client(
                self.env(target, queue, ignore),
                "prefill",
                "--system",
                "ours",
                "--n",
                str(self.plan.n),
                "--run",
                run,
            )
        else:
            prefill.fill(target.broker_url, target.kind, queue, run, self.plan.n, ignore)

    def wait_done(self, run: str, worker: Worker) -> None:
        """Block until the last marker has run (BLPOP: one Redis command a second, not a poll
        loop competing for the CPU), or fail if the worker dies or takes too long."""
        deadline = time.monotonic() + self.plan.drain_timeout
        while not self.marks.blpop([done_key(run)], timeout=1):
            worker.check_alive()
            if time.monotonic() > deadline:
                raise WorkerFailed(f"the last marker did not run in time:\n{worker.tail()}")

    # -- enqueue ---------------------------------------------------------------------------
    def enqueue(self) -> None:
        for kind in self.plan.brokers:
            target = self.targets[kind]
            variants = [("ours", False)]
            if kind != "embedded" and "celery" in self.plan.systems:
                variants.append(("celery", False))
            if self.has_batch_api(target):
                variants.append(("ours", True))
            for repeat in range(self.plan.repeat):
                for system, batch in variants:
                    self.enqueue_once(target, system, batch, repeat)

    def has_batch_api(self, target: Target) -> bool:
        env = self.env(target, "bench.features", True)
        return bool(self.client(env, "features", "--system", "ours", "--n", "0")["delay_many"])

    def enqueue_once(self, target: Target, system: str, batch: bool, repeat: int) -> None:
        label = f"{system} batch" if batch else system
        sample: Sample = {
            "broker": target.kind,
            "system": label,
            "repeat": repeat,
            "n": self.plan.n,
        }
        queue = f"bench.{uuid.uuid4().hex[:10]}"
        args = ["enqueue", "--system", system, "--n", str(self.plan.n), *(["--batch"] * batch)]
        with self.recording("enqueue", sample):
            target.clear(queue)
            try:
                out = self.client(self.env(target, queue, True), *args)
            finally:
                target.clear(queue)
            sample["rate"] = self.plan.n / out["seconds"]
            self.progress("enqueue", sample, f"{sample['rate']:,.0f}/s")

    # -- round trip ------------------------------------------------------------------------
    def roundtrip(self) -> None:
        for kind in (k for k in self.plan.brokers if k != "embedded"):
            for pool in self.plan.pools:
                for repeat in range(self.plan.repeat):
                    for system in self.plan.systems:
                        spec = WorkerSpec(system, pool, self.plan.concurrency)
                        self.roundtrip_once(self.targets[kind], spec, repeat)

    def roundtrip_once(self, target: Target, spec: WorkerSpec, repeat: int) -> None:
        sample: Sample = {
            "broker": target.kind,
            "pool": spec.pool,
            "system": spec.label,
            "repeat": repeat,
            "n": self.plan.roundtrips,
        }
        queue = f"bench.{uuid.uuid4().hex[:10]}"
        with self.recording("roundtrip", sample):
            target.clear(queue)
            worker = self.start(spec, target, queue, False, "warning")
            try:
                out = self.client(
                    self.env(target, queue, False),
                    "roundtrip",
                    "--system",
                    spec.system,
                    "--n",
                    str(self.plan.roundtrips),
                )
            finally:
                sample["exit_status"], _ = worker.stop()
                target.clear(queue)
            sample["flags"] = exit_flags(sample)
            latencies = sorted(out["ms"])
            sample.update(
                p50=_percentile(latencies, 50),
                p99=_percentile(latencies, 99),
                ms=[round(x, 4) for x in out["ms"]],
            )
            self.progress(
                "roundtrip", sample, f"p50 {sample['p50']:.2f} ms, p99 {sample['p99']:.2f} ms"
            )

    # -- idle RSS --------------------------------------------------------------------------
    def idle(self) -> None:
        kind = "redis" if "redis" in self.plan.brokers else self.plan.brokers[0]
        for repeat in range(self.plan.repeat):
            for system in self.plan.systems:
                if kind == "embedded" and system == "celery":
                    continue
                self.idle_once(self.targets[kind], WorkerSpec(system, "solo", 1), repeat)

    def idle_once(self, target: Target, spec: WorkerSpec, repeat: int) -> None:
        sample: Sample = {"broker": target.kind, "system": spec.label, "repeat": repeat}
        queue = f"bench.{uuid.uuid4().hex[:10]}"
        with self.recording("idle", sample):
            # -l info only to see the ready line; an idle worker logs nothing else
            worker = self.start(spec, target, queue, True, "info")
            try:
                worker.wait_ready(timeout=120)
                time.sleep(IDLE_SETTLE)
                sample["rss_mib"] = procs.tree_rss_kib(worker.pid) / 1024
            finally:
                sample["exit_status"], _ = worker.stop()
                target.clear(queue)
            sample["flags"] = exit_flags(sample)
            self.progress("idle", sample, f"{sample['rss_mib']:.1f} MiB")

    # -- raw limits ------------------------------------------------------------------------
    def raw(self) -> None:
        for repeat in range(self.plan.repeat):
            for name, measure in self.raw_tests():
                sample: Sample = {"test": name, "repeat": repeat}
                with self.recording("raw", sample):
                    sample["rate"] = measure()
                    self.progress("raw", sample, f"{sample['rate']:,.2f}")

    def raw_tests(self) -> list[tuple[str, Callable[[], float]]]:
        n, key = self.plan.n, f"bench.raw.{uuid.uuid4().hex[:10]}"
        redis_url = self.plan.dbs.url(self.plan.dbs.broker)
        tests: list[tuple[str, Callable[[], float]]] = []
        if "redis" in self.plan.brokers:
            tests += [
                ("kombu consume+ack, Redis", lambda: raw.kombu_consume_ack(redis_url, key, n)),
                ("redis-py RPOP key 100", lambda: raw.redis_rpop_batch(redis_url, key, n)),
                ("redis-py LPUSH, pipelined", lambda: raw.redis_lpush_pipelined(redis_url, key, n)),
                ("redis-py PING round trip (ms)", lambda: raw.redis_ping_ms(redis_url, 1000)),
            ]
        if "amqp" in self.plan.brokers:
            tests += [
                ("kombu consume+ack, RabbitMQ", lambda: raw.kombu_consume_ack(AMQP_URL, key, n)),
                ("py-amqp consume, no ack", lambda: raw.amqp_consume_no_ack(AMQP_URL, key, n)),
            ]
        return tests

    def close(self) -> None:
        for target in self.targets.values():
            target.close()


def _percentile(sorted_values: Sequence[float], pct: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def drain_figures(marks: Mapping[Any, Any], plan: Plan, kind: str, spawned_at: float) -> Sample:
    """Rate and per-task costs from what the two markers recorded inside the worker."""
    m = {_text(k): _text(v) for k, v in marks.items()}
    if "first.time" not in m or "last.time" not in m:
        raise WorkerFailed(f"markers missing: {sorted(m)}")
    delta = {
        f: float(m[f"last.{f}"]) - float(m[f"first.{f}"])
        for f in ("time", "cpu", "servers_cpu", "busy")
    }
    n = plan.n
    others = max(0.0, delta["busy"] - delta["cpu"] - delta["servers_cpu"]) / delta["time"]
    figures: Sample = {
        "startup_seconds": float(m["first.time"]) - spawned_at,
        "seconds": delta["time"],
        "rate": n / delta["time"],
        "cpu_us": delta["cpu"] / n * 1e6,
        "server_cpu_us": delta["servers_cpu"] / n * 1e6,
        "others_cores": others,
        "foreign_clients": _foreign(m.get("last.clients", "[]"), plan.dbs, delta["time"]),
    }
    if kind == "redis" and "last.calls" in m:
        figures["cmds"] = int(m["last.calls"]) / n
    return figures


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _foreign(clients_json: str, dbs: RedisDbs, seconds: float) -> list[Sample]:
    """Redis clients on other databases that were active during the run."""
    return [
        c for c in json.loads(clients_json) if c["db"] not in dbs.all() and c["idle"] <= seconds
    ]


def drain_flags(sample: Sample, n: int) -> list[str]:
    flags = []
    if sample.get("others_cores", 0) > BUSY_CORES:
        flags.append("busy")
    if sample.get("foreign_clients"):
        flags.append("shared-redis")
    if sample.get("left_in_queue"):
        flags.append("left-in-queue")
    if sample.get("results_stored") is not None and sample["results_stored"] < n:
        flags.append("results-missing")
    return flags + exit_flags(sample)


def exit_flags(sample: Sample) -> list[str]:
    """A worker that did not leave cleanly on SIGTERM is worth a flag next to its figures."""
    status = sample.get("exit_status")
    if status is None:
        return ["hung-on-stop"]
    return [] if status == 0 else [f"exit-{status}"]


def _drain_summary(sample: Sample) -> str:
    parts = [f"{sample['rate']:,.0f} tasks/s", f"{sample['cpu_us']:,.0f} us CPU/task"]
    if "cmds" in sample:
        parts.append(f"{sample['cmds']:.2f} cmds/task")
    parts.append(f"{sample['peak_rss_mib']:.1f} MiB")
    if sample["flags"]:
        parts.append(" ".join(sample["flags"]))
    return ", ".join(parts)


# -- report ------------------------------------------------------------------------------------
def summaries(samples: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
    return {
        "drain": report.drain_rows(samples["drain"]),
        "enqueue": report.summarize(samples["enqueue"], ("broker", "system"), ("rate",)),
        "roundtrip": report.summarize(
            samples["roundtrip"], ("broker", "pool", "system"), ("p50", "p99")
        ),
        "raw": report.summarize(samples["raw"], ("test",), ("rate",)),
        "idle": report.summarize(samples["idle"], ("broker", "system"), ("rss_mib",)),
    }


def render(plan: Plan, summary: dict[str, list[Sample]], info: Sample, command: str) -> str:
    """The report: a block per section that ran, the target checks, the machine."""
    reps = f"median of {plan.repeat}" if plan.repeat > 1 else "one run"
    blocks = {
        "idle": [
            f"== Idle RSS of a solo worker after start-up ({reps}) ==",
            report.simple_table(
                summary["idle"], ("broker", "system"), [("RSS MiB", "rss_mib", ".1f")]
            ),
        ],
        "drain": [
            f"== Drain: {plan.n:,} pre-filled no-op tasks, first to last execution, "
            f"-c {plan.concurrency} ({reps}) ==",
            report.drain_table(summary["drain"]),
            "",
            *report.ratio_lines(summary["drain"]),
        ],
        "enqueue": [
            f"== Enqueue from one client: {plan.n:,} x add.delay(i, i), results ignored "
            f"({reps}) ==",
            report.simple_table(
                summary["enqueue"], ("broker", "system"), [("tasks/s", "rate", ",.0f")]
            ),
            *_enqueue_ratios(summary["enqueue"]),
        ],
        "roundtrip": [
            f"== Round trip: add.delay(2, 2).get() x {plan.roundtrips:,} on a warm worker, "
            f"Redis result backend ({reps} of each percentile) ==",
            report.simple_table(
                summary["roundtrip"],
                ("broker", "pool", "system"),
                [("p50 ms", "p50", ".2f"), ("p99 ms", "p99", ".2f")],
            ),
        ],
        "raw": [
            f"== Raw limits: {plan.n:,} small messages, no task system ({reps}) ==",
            report.simple_table(summary["raw"], ("test",), [("msgs/s (or ms)", "rate", ",.2f")]),
        ],
    }
    checks = report.target_checks(
        summary["drain"], summary["enqueue"], summary["roundtrip"], summary["raw"], summary["idle"]
    )
    out = [line for name in SECTIONS if summary[name] for line in (*blocks[name], "")]
    out += ["== Targets of issue 7, in this run ==", *report.check_lines(checks), ""]
    out += [*machine.lines(info), f"Command: {command}"]
    return "\n".join(out)


def _enqueue_ratios(rows: Sequence[Sample]) -> list[str]:
    lines = []
    for broker in dict.fromkeys(r["broker"] for r in rows):
        rates = {r["system"]: r["rate"] for r in rows if r["broker"] == broker and r["rate"]}
        celery = rates.get("celery")
        for system in ("ours", "ours batch"):
            if celery and system in rates:
                lines.append(f"{broker:8} {system}/Celery: {rates[system] / celery:.2f}x")
    return lines


def write_json(plan: Plan, path: pathlib.Path, payload: Sample) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")


def run(plan: Plan, bench: Bench) -> bool:
    """Every requested section, in order; False if interrupted."""
    try:
        for section in SECTIONS:
            if section in plan.sections:
                getattr(bench, section)()
    except KeyboardInterrupt:
        print("interrupted: reporting what was measured", file=sys.stderr)
        return False
    return True


def _exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every worker started is stopped on the way out."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    plan = parse_args(argv)
    _exit_on_sigterm()
    info = machine.describe()
    try:
        plan.dbs.claim()
    except DatabaseInUse as exc:
        print(exc, file=sys.stderr)
        return 2
    processes = Processes()
    logs = pathlib.Path(tempfile.mkdtemp(prefix="bench-logs-"))
    bench = Bench(plan, processes, logs)
    started = time.monotonic()
    try:
        complete = run(plan, bench)
    finally:
        processes.kill_all()
        bench.close()
        plan.dbs.release()
    info["load_after"] = os.getloadavg()
    info["commit_after"] = machine.our_commit()
    summary = summaries(bench.samples)
    command = " ".join(["python", "bench/compare.py", *(argv or sys.argv[1:])])
    write_json(
        plan,
        plan.json_path,
        {
            "command": command,
            "machine": info,
            "complete": complete,
            "seconds": time.monotonic() - started,
            "plan": plan.__dict__,
            "summary": summary,
            "samples": bench.samples,
        },
    )
    print(render(plan, summary, info, command))
    print(f"Raw samples: {plan.json_path}; took {time.monotonic() - started:,.0f} s")
    failed = any("error" in s for section in bench.samples.values() for s in section)
    if failed:
        print(f"Some runs failed; worker logs kept in {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return 0 if complete and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
