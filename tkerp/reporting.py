"""What error pages and error reports may show: never a credential.

Django's filter hides settings and request META entries whose names contain API, TOKEN, KEY,
SECRET, PASS or SIGNATURE. Connection strings carry passwords under other names
(DATABASE_URL, Q_REDIS_URL, the Q_CLUSTER and CACHES dicts, EMAIL_HOST_USER...), and with DEBUG
on, the development server's request META holds the whole process environment. This filter hides
those too, on the DEBUG page and in the reports mailed to admins alike.
"""

import re

from django.views.debug import SafeExceptionReporterFilter


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|CREDENTIAL|"
        "URL|URI|DSN|DATABASE|REDIS|Q_CLUSTER|CACHES|BROKER|EMAIL_HOST|FERNET|PGDATA",
        flags=re.IGNORECASE,
    )
