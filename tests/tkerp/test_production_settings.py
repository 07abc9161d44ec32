"""DEBUG is off unless asked for; production settings pass `check --deploy`; error pages never
show a credential (issue 9, item 2).

Settings are computed once per process, so each case runs Django in a subprocess with exactly
the environment it describes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.urls import path

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "p7XvKq2M9sLrT4wYb8NcZ1dF6gHjE3aQ0uVxRtSy5oPiLkMnBvCzAq",
    "ALLOWED_HOSTS": "erp.example.com",
    "DATABASE_URL": "postgres://tkerp:pw@db.example.com:5432/tkerp",
    "TKERP_FERNET_KEYS": "Vm5xQ0t3bFh2S0l0b0c2dDRkWjdjR3M5b1RqZ3B3Rjg=",
    "TKERP_LOCAL_ENV": "",
}


def django_run(code: str, env: dict, *args: str) -> subprocess.CompletedProcess:
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEBUG", "DATABASE_URL", "SECRET_KEY", "TKERP_", "DJANGO_"))
    }
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else []), *args],
        cwd=ROOT,
        env={**keep, "DJANGO_SETTINGS_MODULE": "tkerp.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def settings_values(env: dict, *names: str) -> list[str]:
    """The repr of each setting `names`, read in one process started with `env`."""
    done = django_run(
        "import django; django.setup(); from django.conf import settings; "
        + "; ".join(f"print(repr(settings.{name}))" for name in names),
        env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def settings_value(name: str, env: dict) -> str:
    [value] = settings_values(env, name)
    return value


def test_debug_is_off_unless_asked_for():
    env = {k: v for k, v in PRODUCTION.items() if k != "DEBUG"}
    assert settings_value("DEBUG", env) == "False"


def test_the_demo_file_turns_debug_on_for_every_command_of_the_checkout(tmp_path):
    """`make demo` writes var/demo.env; a second terminal's manage.py reads it by itself."""
    demo_env = tmp_path / "demo.env"
    demo_env.write_text("# written by make demo\nDEBUG=true\n")
    env = {"TKERP_LOCAL_ENV": str(demo_env)}  # no DEBUG, no DATABASE_URL, no SECRET_KEY
    assert settings_value("DEBUG", env) == "True"
    assert settings_value("DATABASES['default']['ENGINE']", env) == "'tkerp.db.embedded'"


def test_the_environment_wins_over_the_demo_file(tmp_path):
    demo_env = tmp_path / "demo.env"
    demo_env.write_text("DEBUG=true\n")
    env = {**PRODUCTION, "TKERP_LOCAL_ENV": str(demo_env)}
    assert settings_value("DEBUG", env) == "False"


def test_without_debug_a_missing_secret_key_is_a_clear_error():
    env = {k: v for k, v in PRODUCTION.items() if k != "SECRET_KEY"}
    done = django_run("import django; django.setup()", env)
    assert done.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in done.stderr


def test_check_deploy_is_clean_with_the_documented_production_variables():
    done = django_run("", PRODUCTION, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_production_defaults_are_the_safe_ones():
    ssl, session, csrf, hsts, sandbox, hasher = settings_values(
        PRODUCTION,
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_HSTS_SECONDS",
        "TKERP_SANDBOX_ENABLED",
        "PASSWORD_HASHERS[0]",
    )
    assert (ssl, session, csrf, sandbox) == ("True", "True", "True", "False")
    assert int(hsts) >= 31536000
    # The test settings swap in a fast hasher; production keeps Django's default.
    assert hasher == "'django.contrib.auth.hashers.PBKDF2PasswordHasher'"


def boom(request):
    raise RuntimeError("something broke")


urlpatterns = [path("boom/", boom)]

# Built, so the source lines the DEBUG page quotes never contain them literally.
DB_PASSWORD = "-".join(["s3cret", "db", "pw"])
REDIS_PASSWORD = "-".join(["r3dis", "pw"])
MAIL_PASSWORD = "-".join(["mail", "pw", "123"])


@pytest.mark.django_db
@override_settings(
    DEBUG=True,
    ROOT_URLCONF=__name__,
    DATABASE_URL=f"postgres://tkerp:{DB_PASSWORD}@db:5432/tkerp",
    Q_CLUSTER={"name": "tkerp", "redis": f"redis://:{REDIS_PASSWORD}@cache:6379/0"},
    CACHES={
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://:{REDIS_PASSWORD}@cache:6379/1",
        }
    },
    EMAIL_HOST_PASSWORD=MAIL_PASSWORD,
)
def test_the_debug_error_page_shows_no_credential():
    client = Client(raise_request_exception=False)
    response = client.get("/boom/", HTTP_X_DATABASE_URL=f"postgres://x:{DB_PASSWORD}@h/db")
    assert response.status_code == 500
    page = response.content.decode()
    assert "something broke" in page  # it is the technical page
    for secret in (DB_PASSWORD, REDIS_PASSWORD, MAIL_PASSWORD):
        assert secret not in page


REDIS = "redis://127.0.0.1:6379/0"


def redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS, socket_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.mark.skipif(not redis_answers(), reason="needs the Redis server on 127.0.0.1:6379")
def test_cache_redis_url_shares_the_cache_between_processes():
    """What one web process counts (the API throttle), another sees: one Redis behind both."""
    env = {**PRODUCTION, "CACHE_REDIS_URL": REDIS, "Q_CLUSTER_NAME": f"tkerp-test-{os.getpid()}"}
    key = "shared-cache-check"
    code = (
        "import django, sys; django.setup(); from django.core.cache import cache; "
        "print(cache.incr(sys.argv[1]) if len(sys.argv) > 2 else cache.add(sys.argv[1], 41))"
    )
    try:
        first = django_run(code, env, key)
        second = django_run(code, env, key, "incr")
        assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
        assert (first.stdout.strip(), second.stdout.strip()) == ("True", "42")
        assert settings_value("CACHES['default']['BACKEND']", env) == (
            "'django.core.cache.backends.redis.RedisCache'"
        )
    finally:
        import redis

        redis.Redis.from_url(REDIS).delete(f"{env['Q_CLUSTER_NAME']}:1:{key}")  # Django's key
