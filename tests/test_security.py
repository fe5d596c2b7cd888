"""Production settings pass Django's deployment checks; logins are rate-limited."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.test import Client

ROOT = Path(__file__).resolve().parents[1]


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WEBHOOKS_", "SECURE_", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DJANGO_ALLOW_ASYNC"))
    }
    env.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="webhooks.clientflow.example",
        WEBHOOKS_ENCRYPTION_KEYS="E3nc9fqopet4H0RnU2HHLKSXjkxnhHL70vQ2E-cITds=",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_encryption_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WEBHOOKS_ENCRYPTION_KEYS", "DEBUG")}
    env.update(SECRET_KEY=secrets.token_urlsafe(64), DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "WEBHOOKS_ENCRYPTION_KEYS must be set unless DEBUG is on." in result.stderr


def test_logins_are_locked_after_repeated_failures(db, owner):
    client = Client()
    codes = [client.post("/accounts/login/", {"username": "olivia", "password": "wrong"}).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 200, 429]  # the form again with its error, then locked at the fifth
    locked = client.post("/accounts/login/", {"username": "olivia", "password": "pw-olivia-123"})
    assert locked.status_code == 429
    assert "Too many failed log-in attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session
    # Someone else, elsewhere, is not locked out of their own account by it.
    other = Client(REMOTE_ADDR="10.9.8.7")
    assert other.post("/accounts/login/", {"username": "olivia", "password": "pw-olivia-123"}).status_code == 302
