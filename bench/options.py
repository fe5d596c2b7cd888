"""The bench's command line. Every size has a full default and a smaller one for --smoke."""

import argparse
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.infra import DEFAULT_BROKER_URL, DEFAULT_DATABASE_URL, ROOT

# name: (full run, --smoke)
SIZES: dict[str, tuple[Any, Any]] = {
    "events": (20_000, 300),
    "endpoints": (8, 8),
    "fanout": ((1_000, 10_000), (100, 300)),
    "fanout_wait": (60.0, 60.0),
    "hanging": (20, 5),
    "latency_seconds": (10.0, 3.0),
    "latency_warmup_seconds": (2.0, 0.5),
    "latency_max": (5_000, 150),
    "warmup": (25, 5),
}


# In the order they run; the latency run needs the throughput run's figure unless
# --latency-rate gives its rate.
PHASES = ("throughput", "latency", "fanout", "slow")


@dataclass(frozen=True)
class Options:
    smoke: bool
    events: int
    endpoints: int
    workers: int
    fanout: tuple[int, ...]
    fanout_wait: float
    hanging: int
    latency_seconds: float
    latency_warmup_seconds: float
    latency_max: int
    warmup: int
    chunk: int
    stall_timeout: float
    receiver: str
    database_url: str
    broker_url: str
    json_path: Path
    phases: tuple[str, ...] = PHASES
    latency_rate: float | None = None

    def as_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["fanout"] = list(self.fanout)
        values["phases"] = list(self.phases)
        values["json_path"] = str(self.json_path)
        return values


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated numbers, e.g. 1000,10000") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("expected positive numbers")
    return sizes


def _phases(text: str) -> tuple[str, ...]:
    chosen = {part.strip() for part in text.split(",") if part.strip()}
    if not chosen or chosen - set(PHASES):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(PHASES)}")
    return tuple(p for p in PHASES if p in chosen)


def _positive(kind: type, *, zero: bool = False) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError("must be at least 0" if zero else "must be positive")
        return value

    return parse


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the delivery pipeline: PostgreSQL, Redis, real workers, a fast HTTPS receiver.",
    )
    parser.add_argument("--smoke", action="store_true", help="a few hundred deliveries in every phase (CI)")
    parser.add_argument("--events", type=_positive(int), help="events of the throughput runs (20000; smoke 300)")
    parser.add_argument("--endpoints", type=_positive(int), help="healthy endpoints they are spread over (8)")
    parser.add_argument(
        "--workers", type=_positive(int), default=1, help="worker processes, each as the Procfile says (1)"
    )
    parser.add_argument(
        "--fanout-wait",
        type=_positive(float),
        help="seconds a fan-out's deliveries are waited for; what is left is then cancelled (60)",
    )
    parser.add_argument("--fanout", type=_sizes, help="fan-out sizes (1000,10000; smoke 100,300)")
    parser.add_argument(
        "--hanging", type=_positive(int), help="endpoints that never answer in the slow-receiver run (20; smoke 5)"
    )
    parser.add_argument(
        "--latency-warmup-seconds",
        type=_positive(float, zero=True),
        help="publishing at the latency run's rate before it, not counted (2; smoke 0.5)",
    )
    parser.add_argument("--latency-seconds", type=_positive(float), help="length of the latency run (10; smoke 3)")
    parser.add_argument(
        "--latency-max", type=_positive(int), help="most deliveries in the latency run (5000; smoke 150)"
    )
    parser.add_argument(
        "--warmup", type=_positive(int), help="events per endpoint before the throughput run, not timed (25; smoke 5)"
    )
    parser.add_argument(
        "--phases", type=_phases, default=PHASES, help=f"which runs after the baseline ({','.join(PHASES)})"
    )
    parser.add_argument(
        "--latency-rate", type=_positive(float), help="events/s of the latency run (half the measured throughput)"
    )
    parser.add_argument("--chunk", type=_positive(int), default=500, help="events per events_publish call (500)")
    parser.add_argument(
        "--stall-timeout",
        type=_positive(float),
        default=60.0,
        help="give up waiting for deliveries when none succeeds for this many seconds (60)",
    )
    parser.add_argument(
        "--receiver",
        choices=["auto", "nginx", "python"],
        default="auto",
        help="HTTPS receiver (auto: nginx if installed)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help=f"PostgreSQL database, dropped and re-created (env BENCH_DATABASE_URL; {DEFAULT_DATABASE_URL})",
    )
    parser.add_argument(
        "--broker-url",
        default=os.environ.get("BENCH_BROKER_URL", DEFAULT_BROKER_URL),
        help=f"Redis broker; the run uses a queue of its own (env BENCH_BROKER_URL; {DEFAULT_BROKER_URL})",
    )
    parser.add_argument("--json", type=Path, help="where the results go (bench-results/bench-<UTC time>.json)")
    args = parser.parse_args(argv)
    profile = 1 if args.smoke else 0
    sizes = {
        name: getattr(args, name) if getattr(args, name) is not None else pair[profile] for name, pair in SIZES.items()
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Options(
        smoke=args.smoke,
        workers=args.workers,
        chunk=args.chunk,
        stall_timeout=args.stall_timeout,
        receiver=args.receiver,
        database_url=args.database_url,
        broker_url=args.broker_url,
        phases=args.phases,
        latency_rate=args.latency_rate,
        json_path=args.json or ROOT / "bench-results" / f"bench-{stamp}.json",
        **sizes,
    )
