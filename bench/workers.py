"""Worker processes started exactly as the Procfile's `worker:` line says, and their memory."""

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# ${VAR:-default}, ${VAR-default}, ${VAR} and $VAR, as a shell expands them.
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?-)(?P<default>[^}]*))?\}|\$(?P<bare>\w+)")


def expand(text: str, env: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        if match["bare"]:
            return env.get(match["bare"], "")
        current = env.get(match["name"])
        if match["op"] == ":-":
            return current or match["default"]
        if match["op"] == "-":
            return match["default"] if current is None else current
        return current or ""

    return _VARIABLE.sub(value, text)


def procfile_command(procfile: Path, process: str, env: Mapping[str, str]) -> list[str]:
    """The argv of one Procfile process, its variables expanded from `env`."""
    for line in procfile.read_text().splitlines():
        name, colon, command = line.partition(":")
        if colon and name.strip() == process:
            return shlex.split(expand(command.strip(), env))
    raise ValueError(f"{procfile} has no {process}: line")


def option(argv: Sequence[str], *names: str) -> str | None:
    """The value of a command-line option given as `--name value`, `--name=value` or `-c value`."""
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                return argv[index + 1]
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def concurrency(argv: Sequence[str]) -> int:
    """Threads per worker process: the command's --concurrency, or Celery's default (CPUs)."""
    given = option(argv, "--concurrency", "-c")
    return int(given) if given else (os.cpu_count() or 1)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            # The command name is in parentheses and may hold spaces: fields follow the last ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants (VmRSS), 0 when gone."""
    total = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total + sum(rss_bytes(child) for child in _children(pid))


class WorkerProcess:
    """One worker, in a session of its own so that stopping it reaches every process it
    started. Its output goes to a log file, in which Celery says "ready." once it consumes."""

    def __init__(self, *, argv: Sequence[str], env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.argv = list(argv)
        # `celery` as the Procfile says, found on the PATH the workers get (the venv's first).
        found = shutil.which(self.argv[0], path=env.get("PATH"))
        if found:
            self.argv[0] = found
        self.log_path = log_path
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env),
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if b"ready." in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout:g}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def stop(self, grace: float = 15) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL for whatever is left."""
        if self.alive():
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)
