"""`python -m bench`: set everything up, run the phases, report, clean up."""

import os
import shutil
import sys
import tempfile
import threading
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import trustme

from bench import infra, report
from bench.infra import ROOT, BenchError
from bench.options import Options, parse
from bench.receivers import HangingListener, Receiver, start_receiver
from bench.workers import WorkerProcess, concurrency, procfile_command

if TYPE_CHECKING:
    from bench import phases  # imports Django: only once the environment is set

# Celery's cluster chatter reaches every worker on the same Redis database: off, so that
# the bench neither disturbs nor is disturbed by anyone else's workers there.
WORKER_ISOLATION = ["--without-gossip", "--without-mingle"]


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _settings_in_force() -> dict[str, Any]:
    """The pipeline's tunables as this run had them, to compare runs by."""
    from django.conf import settings

    hidden = {"WEBHOOKS_ENCRYPTION_KEYS", "WEBHOOKS_CA_BUNDLE"}
    names = [n for n in dir(settings) if n.startswith("WEBHOOKS_") and n not in hidden]
    names += ["CELERY_WORKER_PREFETCH_MULTIPLIER", "CELERY_TASK_ACKS_LATE"]
    values = {name: getattr(settings, name, None) for name in names}
    values["CONN_MAX_AGE"] = settings.DATABASES["default"].get("CONN_MAX_AGE")
    return values


class Run:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.started_at = datetime.now(UTC)
        self.directory = Path(tempfile.mkdtemp(prefix="clientflow-bench-"))
        self.directory.chmod(0o755)  # nginx's worker (nobody, under root) reads below it
        self.queue = f"bench-{uuid.uuid4().hex[:12]}"
        self.receiver: Receiver | None = None
        self.hanging: HangingListener | None = None
        self.workers: list[WorkerProcess] = []
        self.failures: list[str] = []
        self.phases: dict[str, Any] = {}
        self.document: dict[str, Any] = {
            "bench": "clientflow-webhooks",
            "mode": "smoke" if options.smoke else "full",
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "options": {
                **options.as_json(),
                "database_url": _redact(options.database_url),
                "broker_url": _redact(options.broker_url),
            },
        }

    def execute(self) -> int:
        try:
            self._run()
        except BenchError as exc:
            self.failures.append(str(exc))
        except KeyboardInterrupt:
            self.failures.append("interrupted")
        except Exception:
            traceback.print_exc()
            self.failures.append(f"crashed: {traceback.format_exc(limit=1).strip().splitlines()[-1]}")
        finally:
            self._clean_up()
        return self._report()

    def _run(self) -> None:
        bench, groups, ca_file, threads = self._prepare()
        from bench import phases

        chosen = self.options.phases
        self.phases["baseline"] = phases.baseline_phase(bench, ca_file=ca_file, threads=threads)
        if "throughput" in chosen:
            self.phases["throughput"], self.phases["memory"] = phases.throughput(
                bench, groups.throughput, self.phases["baseline"]["deliveries_per_s"]
            )
        if "latency" in chosen:
            if self.options.latency_rate is not None:
                rate = self.options.latency_rate
            elif "throughput" in chosen:
                rate = self.phases["throughput"]["deliveries_per_s"] / 2
            else:
                raise BenchError("the latency run needs the throughput run or --latency-rate")
            self._vacuum("latency")
            self.phases["latency"] = phases.latency(bench, groups.latency, rate=rate)
        if "fanout" in chosen:
            self._vacuum("fanout")
            self.phases["fanout"] = phases.fanout(bench, groups.fanouts)
        if "slow" in chosen:
            if "throughput" not in chosen:
                raise BenchError("the slow-receiver run is compared with the throughput run")
            self._vacuum("slow receivers")
            self.phases["slow_receivers"] = phases.slow_receivers(
                bench, groups.slow, groups.hanging, reference=self.phases["throughput"]
            )
        self.phases["receiver"] = phases.receiver_summary(bench)
        for index, worker in enumerate(self.workers):
            if not worker.alive():
                self.failures.append(f"worker {index} exited during the run (log: {worker.log_path})")

    def _vacuum(self, before: str) -> None:
        from bench import phases

        _say(f"vacuum before {before}")
        self.phases.setdefault("vacuum", []).append(phases.vacuum(before=before))

    def _prepare(self) -> tuple["phases.Bench", "phases.Groups", str, int]:
        """Database, broker, environment, Django, receivers, endpoints and workers."""
        options = self.options
        redis_server = infra.redis_version(options.broker_url)
        ca = trustme.CA()
        ca_file = self.directory / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        database = infra.database_recreate(options.database_url)
        for note in database.notes:
            _say(note)
        self.document["machine"] = infra.machine(postgres=database.server_version, redis_server=redis_server)
        self.document["broker"] = {"url": _redact(options.broker_url), "queue": self.queue}
        self.document["database"] = database.name

        env = infra.bench_env(
            database_url=options.database_url, broker_url=options.broker_url, queue=self.queue, ca_file=str(ca_file)
        )
        # The venv's `celery` for the Procfile's command, as `make run` puts it first on PATH.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        worker_env = {**os.environ, **env, "PATH": path}
        _say(f"migrating {database.name}")
        infra.migrate(worker_env)
        os.environ.update(env)
        # The bench's own process logs a line per event at INFO: too many beside the bars.
        os.environ["LOG_LEVEL"] = "WARNING"
        import django

        django.setup()
        from bench import phases

        self.document["settings"] = _settings_in_force()
        self.receiver = receiver = start_receiver(kind=options.receiver, ca=ca, directory=self.directory)
        self.hanging = hanging = HangingListener()
        self.document["receiver"] = {"kind": receiver.kind, "version": receiver.version}
        _say(f"receiver: {receiver.kind} on port {receiver.port}; hanging listener on {hanging.port}")
        _say("creating workspaces and endpoints")
        groups = phases.groups_create(options, receiver, hanging)

        argv = procfile_command(ROOT / "Procfile", "worker", worker_env)
        threads = concurrency(argv)
        _say(f"starting {options.workers} worker(s): {' '.join(argv)}")
        for index in range(options.workers):
            self.workers.append(
                WorkerProcess(
                    argv=[*argv, "--hostname", f"bench{index}@%h", *WORKER_ISOLATION],
                    env=worker_env,
                    cwd=ROOT,
                    log_path=self.directory / f"worker-{index}.log",
                )
            )
        for worker in self.workers:
            worker.wait_ready()
        self.document["workers"] = {
            "command": argv,
            "processes": options.workers,
            "threads_each": threads,
            "pids": [w.pid for w in self.workers],
            "rss_at_start_mb": round(sum(w.rss_bytes() for w in self.workers) / phases.MB, 1),
        }
        # One list of failures: the phases add to it.
        bench = phases.Bench(
            options=options,
            receiver=receiver,
            hanging=hanging,
            workers=self.workers,
            queue=self.queue,
            failures=self.failures,
        )
        return bench, groups, str(ca_file), threads

    def _clean_up(self) -> None:
        # Workers first (in parallel: each may wait for attempts under way), then what they talked to.
        stoppers = [threading.Thread(target=worker.stop) for worker in self.workers]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        if self.receiver is not None:
            self.receiver.stop()
        if self.hanging is not None:
            self.hanging.stop()
        infra.redis_cleanup(self.options.broker_url, self.queue)

    def _report(self) -> int:
        finished = datetime.now(UTC)
        rows = report.figures(self.phases)
        missed = [f.label for f in rows if f.met is False]
        self.document.update(
            finished_at=finished.isoformat(timespec="seconds"),
            duration_s=round((finished - self.started_at).total_seconds(), 1),
            ok=not self.failures,
            failures=self.failures,
            missed_targets=missed,
            phases=self.phases,
        )
        report.write_json(self.options.json_path, self.document, rows)
        receiver = self.document.get("receiver", {})
        print()
        print(
            f"ClientFlow Webhooks bench ({self.document['mode']}, {self.options.workers} worker(s), "
            f"receiver: {receiver.get('kind', '?')} {receiver.get('version', '')}) "
            f"in {self.document['duration_s']:.0f}s"
        )
        print(report.table(rows))
        print(f"\nJSON: {self.options.json_path}")
        if missed:
            print("Targets missed (reported, not enforced): " + "; ".join(missed))
        if self.failures:
            print("FAILED:\n  " + "\n  ".join(self.failures))
            print(f"Logs kept in {self.directory}")
            return 1
        shutil.rmtree(self.directory, ignore_errors=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    return Run(options).execute()
