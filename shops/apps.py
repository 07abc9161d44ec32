from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_migrate


def _ensure_schedules(sender, using=DEFAULT_DB_ALIAS, **kwargs) -> None:
    # Infrastructure, not domain logic: the periodic sync exists wherever the schema does.
    # A partial migrate may not have created django-q's tables yet; `setup_schedules` then.
    if "django_q_schedule" not in connections[using].introspection.table_names():
        return
    from shops.schedules import schedules_ensure

    schedules_ensure()


class ShopsConfig(AppConfig):
    name = "shops"

    def ready(self) -> None:
        post_migrate.connect(_ensure_schedules, sender=self, dispatch_uid="shops.schedules")
