"""Production settings (DJANGO_ENV=production) pass Django's deployment checklist and refuse
to start without the secrets and hosts a real deployment needs."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def manage(*args: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_"))
    }
    environment.update(VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120
    )


def production_env(**overrides: str) -> dict:
    return {
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "crm.example.com",
        **overrides,
    }


def test_check_deploy_finds_nothing_to_warn_about_in_production(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", tmp_path=tmp_path, **production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = manage("check", tmp_path=tmp_path, **production_env(DJANGO_SECRET_KEY=""))

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_production_refuses_a_short_secret_key(tmp_path):
    result = manage("check", tmp_path=tmp_path, **production_env(DJANGO_SECRET_KEY="too-short"))

    assert result.returncode != 0
    assert "at least 50 characters" in result.stderr


def test_production_refuses_to_start_without_its_hosts(tmp_path):
    env = production_env()
    del env["DJANGO_ALLOWED_HOSTS"]

    result = manage("check", tmp_path=tmp_path, **env)

    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS must name the real hosts" in result.stderr


def test_debug_cannot_be_switched_on_in_production(tmp_path):
    result = manage("check", tmp_path=tmp_path, **production_env(DJANGO_DEBUG="1"))

    assert result.returncode != 0
    assert "DJANGO_DEBUG cannot be on" in result.stderr
