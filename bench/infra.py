"""What the bench runs on: its own PostgreSQL database, a Redis broker, the environment
of the Django process and the workers, and a description of the machine."""

import contextlib
import os
import platform
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://clientflow@127.0.0.1:5432/clientflow_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"


class BenchError(Exception):
    """The bench cannot run or went wrong; the message says why."""


@dataclass
class Database:
    url: str
    name: str
    server_version: str
    notes: list[str]


def _connect(*, host: str, port: int, user: str, password: str | None) -> psycopg.Connection:
    return psycopg.connect(
        host=host, port=port, user=user, password=password, dbname="postgres", autocommit=True, connect_timeout=5
    )


def database_recreate(url: str) -> Database:
    """Drop and create the bench's database, as the URL's role (created first, the way
    `.ci/run` does, when only the `postgres` superuser can log in)."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise BenchError(f"the bench needs PostgreSQL; {url!r} is not a postgres:// URL")
    name = unquote(parts.path.lstrip("/"))
    if "bench" not in name:
        # It is dropped on every run: never a database whose name does not say it is ours.
        raise BenchError(f"refusing to drop database {name!r}: the bench's database name must contain 'bench'")
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    user = unquote(parts.username or "postgres")
    password = unquote(parts.password) if parts.password else None
    notes: list[str] = []
    try:
        admin = _connect(host=host, port=port, user=user, password=password)
    except psycopg.OperationalError as exc:
        try:
            admin = _connect(host=host, port=port, user="postgres", password=None)
        except psycopg.OperationalError:
            raise BenchError(f"cannot connect to PostgreSQL at {host}:{port} as {user}: {exc}") from None
        with admin.cursor() as cursor:
            if cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user]).fetchone():
                admin.close()
                raise BenchError(f"cannot connect to PostgreSQL at {host}:{port} as {user}: {exc}") from None
            create = sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(user))
            if password:
                create = sql.SQL("{} PASSWORD {}").format(create, sql.Literal(password))
            cursor.execute(create)
        notes.append(f"created the PostgreSQL role {user} (LOGIN CREATEDB)")
    with admin, admin.cursor() as cursor:
        # FORCE: a crashed earlier run may have left connections open.
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(user)))
        version = str(cursor.execute("SHOW server_version").fetchone()[0])
    return Database(url=url, name=name, server_version=version, notes=notes)


def migrate(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode:
        raise BenchError(f"manage.py migrate failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")


def redis_version(url: str) -> str:
    if not url.startswith(("redis://", "rediss://")):
        raise BenchError(f"the bench needs Redis; {url!r} is not a redis:// URL")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        return str(client.info("server")["redis_version"])
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {url} is not reachable: {exc}") from None


def redis_queue_clear(url: str, queue: str) -> None:
    """Drop the messages waiting in this run's queue (the database keeps what is due)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.delete(queue)


def redis_cleanup(url: str, queue: str) -> None:
    """Remove this run's queue and whatever of it stopped workers left unacknowledged,
    and nothing else: other people's queues may live on the same Redis database."""
    with contextlib.suppress(redis.RedisError):
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        ours = []
        for tag, value in client.hscan_iter("unacked"):
            # kombu keeps [message, exchange, routing key] per unacknowledged delivery tag.
            if f'"{queue}"'.encode() in value:
                ours.append(tag)
        if ours:
            client.hdel("unacked", *ours)
            client.zrem("unacked_index", *ours)


def bench_env(*, database_url: str, broker_url: str, queue: str, ca_file: str) -> dict[str, str]:
    """The settings the bench's Django process and its workers share."""
    from cryptography.fernet import Fernet

    return {
        "DJANGO_SETTINGS_MODULE": "clientflow_webhooks.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        # A queue of its own instead of flushing: nothing else on that Redis is touched.
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "WEBHOOKS_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "WEBHOOKS_CA_BUNDLE": ca_file,
        "WEBHOOKS_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8,::1/128",
        "WEBHOOKS_MAX_ENDPOINTS_PER_WORKSPACE": "100000",
        "SECURE_SSL_REDIRECT": "false",
        # DEBUG keeps every query in memory: it would be measured as a leak.
        "DEBUG": "false",
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _git() -> dict[str, object]:
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": run("rev-parse", "HEAD") or None, "dirty": bool(run("status", "--porcelain"))}


def machine(*, postgres: str, redis_server: str) -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": _memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "redis": redis_server,
        "git": _git(),
    }
