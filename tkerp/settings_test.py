"""Settings of the test suite: the project's settings, with what the tests need turned on.

DEBUG is on while the settings are computed, which allows the embedded PostgreSQL when
DATABASE_URL is unset and serves the platform sandboxes the connector tests talk to;
pytest-django still runs every test with `settings.DEBUG = False`, as production would.
"""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("TKERP_SANDBOX_ENABLED", "true")

from tkerp.settings import *  # noqa: F403

# Django's advice for test suites: a fast password hasher. PBKDF2's 1,000,000 rounds cost half a
# second for every user a fixture makes, a quarter of the suite's time. Production keeps
# Django's default (tests/tkerp/test_production_settings.py checks it).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# A test lists the parcels it made a moment ago; the feed's margin for clocks and stamps taken
# before a transaction's first statement is tested on its own (tests/logistics/test_api_feed.py).
TKERP_API_FEED_SETTLE_SECONDS = 0
