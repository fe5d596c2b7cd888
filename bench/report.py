"""The figures of a run, against the issue's targets: one table and the same as JSON."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    key: str
    label: str
    value: float | int | None
    unit: str = ""
    target: str = ""  # e.g. "≥ 0.5"; empty where the issue sets none
    met: bool | None = None


def _check(value: float | int | None, op: str, bound: float) -> tuple[str, bool | None]:
    text = f"{op} {bound:g}"
    if value is None:
        return text, None  # not measured: the run failed before (and says so)
    return text, value >= bound if op == "≥" else value <= bound


def _figure(key: str, label: str, value: Any, unit: str = "", target: tuple[str, float] | None = None) -> Figure:
    if target is None:
        return Figure(key, label, value, unit)
    text, met = _check(value, *target)
    return Figure(key, label, value, unit, text, met)


def figures(phases: dict[str, Any]) -> list[Figure]:
    """Every figure the issue asks for, in the order of the phases. A phase that did not
    run gives None values, neither met nor missed."""
    baseline = phases.get("baseline", {})
    run = phases.get("throughput", {})
    latency = phases.get("latency", {})
    fanouts = phases.get("fanout", [])
    slow = phases.get("slow_receivers", {})
    memory = phases.get("memory", {})
    share = slow.get("share_of_throughput")
    result = [
        _figure(
            "baseline_per_s", "baseline: requests/s (requests.Session loops)", baseline.get("deliveries_per_s"), "/s"
        ),
        _figure("throughput_per_s", "throughput: deliveries/s", run.get("deliveries_per_s"), "/s"),
        _figure("throughput_ratio", "throughput / baseline", run.get("ratio_to_baseline"), "", ("≥", 0.5)),
        _figure(
            "throughput_not_succeeded", "throughput: deliveries not succeeded", run.get("not_succeeded"), "", ("≤", 0)
        ),
        _figure(
            "latency_rate_per_s",
            f"latency: events/s published (aimed at {latency.get('target_rate_per_s', '—')})",
            latency.get("achieved_rate_per_s"),
            "/s",
        ),
        _figure("latency_p50_ms", "latency p50 (publish → arrival)", latency.get("p50_ms"), "ms", ("≤", 20)),
        _figure("latency_p95_ms", "latency p95", latency.get("p95_ms"), "ms"),
        _figure("latency_p99_ms", "latency p99", latency.get("p99_ms"), "ms", ("≤", 100)),
        _figure("latency_matched", "latency: deliveries matched in the receiver's log", latency.get("matched"), ""),
    ]
    largest = max((f["endpoints"] for f in fanouts), default=None)
    for fan in fanouts:
        size = fan["endpoints"]
        target = ("≤", 1.0) if size == largest else None
        result += [
            _figure(
                f"fanout_{size}_publish_s",
                f"fan-out {size:,}: event_publish",
                round(fan["publish_ms"] / 1000, 3),
                "s",
                target,
            ),
            _figure(f"fanout_{size}_queries", f"fan-out {size:,}: queries", fan["queries"], ""),
            _figure(
                f"fanout_{size}_delivered_s", f"fan-out {size:,}: all delivered after", fan["delivered_seconds"], "s"
            ),
            _figure(f"fanout_{size}_delivered_per_s", f"fan-out {size:,}: deliveries/s", fan["delivered_per_s"], "/s"),
        ]
    result += [
        _figure("slow_per_s", "slow receivers: healthy deliveries/s", slow.get("deliveries_per_s"), "/s"),
        _figure(
            "slow_share_pct",
            "slow receivers: share of throughput",
            round(share * 100, 1) if share is not None else None,
            "%",
            ("≥", 80),
        ),
        _figure("memory_before_mb", "worker RSS before 'throughput'", memory.get("before_mb"), "MB"),
        _figure("memory_after_mb", "worker RSS after 'throughput'", memory.get("after_mb"), "MB"),
        _figure("memory_growth_mb", "worker RSS growth", memory.get("growth_mb"), "MB", ("≤", 20)),
    ]
    return result


def _value(figure: Figure) -> str:
    if figure.value is None:
        return "—"
    if isinstance(figure.value, float):
        # Ratios and seconds to the millisecond; rates, milliseconds, MB and % to a tenth.
        text = f"{figure.value:,.3f}" if figure.unit in {"", "s"} else f"{figure.value:,.1f}"
    else:
        text = f"{figure.value:,}"
    return f"{text} {figure.unit}".strip()


def table(rows: list[Figure]) -> str:
    header = ("figure", "value", "target", "")
    lines = [(f.label, _value(f), f.target, "" if f.met is None else ("ok" if f.met else "MISSED")) for f in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(4)]
    rule = "  ".join("-" * w for w in widths)

    def format_line(line: tuple[str, str, str, str]) -> str:
        return f"{line[0]:<{widths[0]}}  {line[1]:>{widths[1]}}  {line[2]:<{widths[2]}}  {line[3]}".rstrip()

    return "\n".join([format_line(header), rule, *(format_line(line) for line in lines)])


def write_json(path: Path, document: dict[str, Any], rows: list[Figure]) -> None:
    document = {**document, "figures": {f.key: asdict(f) for f in rows}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
