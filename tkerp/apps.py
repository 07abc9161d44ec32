from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class TkerpConfig(AppConfig):
    name = "tkerp"
    verbose_name = "tkerp"

    def ready(self):
        checks.register(fernet_keys_check, checks.Tags.security)


def fernet_keys_check(app_configs=None, **kwargs):
    """A malformed TKERP_FERNET_KEYS is a startup error, not a failure at the first save."""
    from tkerp.encryption import key_problems

    return [
        checks.Error(problem, id="tkerp.E001")
        for problem in key_problems(list(settings.TKERP_FERNET_KEYS))
    ]
