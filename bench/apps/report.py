"""Turning raw samples into medians, tables, ratio lines and the issue's target checks."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

Sample = dict[str, Any]
DRAIN_KEY = ("broker", "pool", "results", "system")


def median_of(samples: Iterable[Sample], field: str) -> float | None:
    values = [s[field] for s in samples if s.get(field) is not None]
    return statistics.median(values) if values else None


def group(samples: Iterable[Sample], keys: Sequence[str]) -> dict[tuple[Any, ...], list[Sample]]:
    """Samples by the values of `keys`, in first-seen order."""
    groups: dict[tuple[Any, ...], list[Sample]] = {}
    for sample in samples:
        groups.setdefault(tuple(sample[k] for k in keys), []).append(sample)
    return groups


def summarize(
    samples: Sequence[Sample], keys: Sequence[str], fields: Sequence[str]
) -> list[Sample]:
    """One row per group: the keys, the median of each field, and the sample count."""
    rows = []
    for values, members in group(samples, keys).items():
        row: Sample = dict(zip(keys, values, strict=True))
        row.update({field: median_of(members, field) for field in fields})
        row["samples"] = len(members)
        row["flags"] = sorted({flag for m in members for flag in m.get("flags", ())})
        rows.append(row)
    return rows


def _fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(
            c.rjust(w) if c[:1].isdigit() or c[:1] in "-." else c.ljust(w)
            for c, w in zip(row, widths, strict=True)
        )
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _find(rows: Sequence[Sample], **match: Any) -> Sample | None:
    for row in rows:
        if all(row.get(k) == v for k, v in match.items()):
            return row
    return None


def drain_rows(samples: Sequence[Sample]) -> list[Sample]:
    fields = ("rate", "cpu_us", "server_cpu_us", "cmds", "peak_rss_mib", "others_cores")
    rows = summarize(samples, DRAIN_KEY, fields)
    for row in rows:
        if row["system"] != "ours":
            continue
        same = {k: row[k] for k in ("broker", "pool", "results")}
        celery = _find(rows, **same, system="celery")
        row["x_celery"] = _ratio(row["rate"], celery["rate"] if celery else None)
        tuned = _find(rows, broker=row["broker"], results=row["results"], system="celery tuned")
        row["x_tuned"] = _ratio(row["rate"], tuned["rate"] if tuned else None)
    return rows


def _versus(row: Sample) -> str:
    parts = []
    if row.get("x_celery") is not None:
        parts.append(f"{row['x_celery']:.1f}x")
    if row.get("x_tuned") is not None:
        parts.append(f"{row['x_tuned']:.1f}x tuned")
    return ", ".join(parts)


# (header, cell) of the drain table
DRAIN_COLUMNS: tuple[tuple[str, Callable[[Sample], str]], ...] = (
    ("broker", lambda r: r["broker"]),
    ("pool", lambda r: r["pool"]),
    ("results", lambda r: r["results"]),
    ("system", lambda r: r["system"]),
    ("tasks/s", lambda r: _fmt(r["rate"])),
    ("ours/Celery", lambda r: _versus(r)),
    ("CPU us/task", lambda r: _fmt(r["cpu_us"])),
    ("server CPU us/task", lambda r: _fmt(r["server_cpu_us"])),
    ("cmds/task", lambda r: _fmt(r["cmds"], ".2f")),
    ("peak RSS MiB", lambda r: _fmt(r["peak_rss_mib"], ".1f")),
    ("others' cores", lambda r: _fmt(r["others_cores"], ".2f")),
    ("n", lambda r: str(r["samples"])),
    ("flags", lambda r: " ".join(r["flags"])),
)


def drain_table(rows: Sequence[Sample]) -> str:
    return table(
        [h for h, _ in DRAIN_COLUMNS], [[cell(r) for _, cell in DRAIN_COLUMNS] for r in rows]
    )


def ratio_lines(rows: Sequence[Sample]) -> list[str]:
    """One line per broker/pool/results: every drain figure of ours over Celery's."""
    lines = []
    for row in rows:
        if row["system"] != "ours":
            continue
        same = {k: row[k] for k in ("broker", "pool", "results")}
        celery = _find(rows, **same, system="celery")
        if celery is None:
            continue
        figures = [
            f"{label} {_fmt(_ratio(row[f], celery[f]), '.2f', 'x')}"
            for label, f in (
                ("drain", "rate"),
                ("CPU/task", "cpu_us"),
                ("cmds/task", "cmds"),
                ("peak RSS", "peak_rss_mib"),
            )
        ]
        if row.get("x_tuned") is not None:
            figures.append(f"drain vs Celery tuned {row['x_tuned']:.2f}x")
        lines.append(
            f"{row['broker']:8} {row['pool']:8} {row['results']:8} ours/Celery: "
            + ", ".join(figures)
        )
    return lines


def simple_table(
    rows: Sequence[Sample], keys: Sequence[str], columns: Sequence[tuple[str, str, str]]
) -> str:
    """`columns`: (header, field, format spec)."""
    headers = [*keys, *(c[0] for c in columns), "n", "flags"]
    body = [
        [str(r[k]) for k in keys]
        + [_fmt(r.get(field), spec) for _, field, spec in columns]
        + [str(r["samples"]), " ".join(r["flags"])]
        for r in rows
    ]
    return table(headers, body)


Check = tuple[str, bool | None, str]


def target_checks(
    drain: Sequence[Sample],
    enqueue: Sequence[Sample],
    roundtrip: Sequence[Sample],
    raw: Sequence[Sample],
    idle: Sequence[Sample],
) -> list[Check]:
    """Issue 7's targets against this run's medians: (target, met or None if unmeasured, detail)."""
    checks: list[Check] = []
    for make in (_redis_checks, _amqp_checks, _embedded_checks):
        checks += make(drain, raw)
    checks += _enqueue_checks(enqueue)
    checks += _roundtrip_checks(roundtrip)
    checks += _idle_checks(idle)
    return checks


def _ours(rows: Sequence[Sample], broker: str) -> list[Sample]:
    return [r for r in rows if r["broker"] == broker and r["system"] == "ours"]


def _redis_checks(drain: Sequence[Sample], raw: Sequence[Sample]) -> list[Check]:
    checks: list[Check] = []
    for r in _ours(drain, "redis"):
        where = f"{r['pool']}, results {r['results']}"
        x = r.get("x_celery")
        checks.append(
            (
                "Redis drain >= 10x Celery, same pool",
                _at_least(x, 10),
                f"{where}: {_fmt(x, '.1f', 'x')}",
            )
        )
        checks.append(
            (
                "Redis <= 3 commands per task",
                _at_most(r["cmds"], 3),
                f"{where}: {_fmt(r['cmds'], '.2f')}",
            )
        )
    return checks


def _amqp_checks(drain: Sequence[Sample], raw: Sequence[Sample]) -> list[Check]:
    checks: list[Check] = []
    kombu = _find(raw, test="kombu consume+ack, RabbitMQ")
    for results in ("ignored", "stored"):
        mine = [r for r in _ours(drain, "amqp") if r["results"] == results and r["rate"]]
        if not mine:
            continue
        best = max(mine, key=lambda r: r["rate"])
        where = f"results {results}, best pool {best['pool']}"
        x = best.get("x_tuned")
        checks.append(
            (
                "RabbitMQ drain >= 2x Celery tuned",
                _at_least(x, 2),
                f"{where}: {_fmt(x, '.2f', 'x')}",
            )
        )
        share = _ratio(best["rate"], kombu["rate"] if kombu else None)
        checks.append(
            (
                "RabbitMQ drain >= 80% of raw kombu consume+ack",
                _at_least(share, 0.8),
                f"{where}: {_fmt(share and share * 100, '.0f', '%')}",
            )
        )
    return checks


def _embedded_checks(drain: Sequence[Sample], raw: Sequence[Sample]) -> list[Check]:
    return [
        (
            "Embedded drain >= 2,000 tasks/s",
            _at_least(r["rate"], 2000),
            f"{r['pool']}, results {r['results']}: {_fmt(r['rate'])}/s",
        )
        for r in _ours(drain, "embedded")
    ]


def _enqueue_checks(enqueue: Sequence[Sample]) -> list[Check]:
    if not enqueue:
        return []
    checks: list[Check] = []
    for r in enqueue:
        celery = _find(enqueue, broker=r["broker"], system="celery")
        if r["system"] != "ours" or celery is None:
            continue
        x = _ratio(r["rate"], celery["rate"] if celery else None)
        checks.append(
            (
                "Enqueue (delay) >= 3x Celery",
                _at_least(x, 3),
                f"{r['broker']}: {_fmt(x, '.1f', 'x')}",
            )
        )
    batch = any(r["system"] == "ours batch" for r in enqueue)
    checks.append(
        (
            "A batch-send API (delay_many)",
            batch if enqueue else None,
            "present" if batch else "absent",
        )
    )
    return checks


def _roundtrip_checks(roundtrip: Sequence[Sample]) -> list[Check]:
    checks: list[Check] = []
    for r in roundtrip:
        if r["system"] == "ours" and r["broker"] == "redis":
            checks.append(
                (
                    "Round trip p50 <= 1 ms on Redis",
                    _at_most(r["p50"], 1.0),
                    f"{r['pool']}: {_fmt(r['p50'], '.2f', ' ms')}",
                )
            )
            checks.append(
                (
                    "Round trip p99 <= 2 ms on Redis",
                    _at_most(r["p99"], 2.0),
                    f"{r['pool']}: {_fmt(r['p99'], '.2f', ' ms')}",
                )
            )
    return checks


def _idle_checks(idle: Sequence[Sample]) -> list[Check]:
    ours, celery = _find(idle, system="ours"), _find(idle, system="celery")
    if not ours or not celery:
        return []
    met = None if ours["rss_mib"] is None else ours["rss_mib"] < celery["rss_mib"]
    return [
        (
            "Idle RSS of a solo worker below Celery's",
            met,
            f"{_fmt(ours['rss_mib'], '.1f')} vs {_fmt(celery['rss_mib'], '.1f')} MiB",
        )
    ]


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def _verdict(met: bool | None) -> str:
    if met is None:
        return "not measured"
    return "met" if met else "NOT met"


def check_lines(checks: Sequence[Check]) -> list[str]:
    return [f"[{_verdict(met):>12}] {target}: {detail}" for target, met, detail in checks]
