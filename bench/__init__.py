"""The benchmark of the delivery pipeline (`make bench`, `python -m bench`).

Real worker processes started from the Procfile's `worker:` line, PostgreSQL, Redis and a
fast HTTPS receiver on 127.0.0.1 (Debian's nginx, or a Python server without it). The
README's "Benchmark" section says what it measures and what it needs.

Nothing here imports Django at module level: the bench sets the environment first, and
the baseline's processes (`bench.baseline`) must start without Django at all.
"""
