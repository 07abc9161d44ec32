from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class TkerpConfig(AppConfig):
    name = "tkerp"
    verbose_name = "tkerp"

    def ready(self):
        from django.db.models.signals import post_migrate

        from tkerp import rls
        from tkerp.db.lookups import lookups_register

        lookups_register()

        checks.register(fernet_keys_check, checks.Tags.security)
        checks.register(rls.rls_check, checks.Tags.database)
        # Once per migrate (sender: this app), after every app's tables exist.
        post_migrate.connect(rls.post_migrate_install, sender=self)
        # The audit trail's actor for tasks and commands (tkerp.audit).
        from django_q.signals import post_execute_in_worker, post_spawn, pre_execute

        from tkerp.audit import audit_commands_install, audit_task_finished, audit_task_started

        pre_execute.connect(audit_task_started, dispatch_uid="tkerp.audit.task_started")
        post_execute_in_worker.connect(audit_task_finished, dispatch_uid="tkerp.audit.task_done")
        audit_commands_install()
        # Each worker process loads what tasks run, then freezes it out of the collector.
        from tkerp.workers import worker_spawned

        post_spawn.connect(worker_spawned, dispatch_uid="tkerp.workers.spawned")


def fernet_keys_check(app_configs=None, **kwargs):
    """A malformed TKERP_FERNET_KEYS is a startup error, not a failure at the first save."""
    from tkerp.encryption import key_problems

    return [
        checks.Error(problem, id="tkerp.E001")
        for problem in key_problems(list(settings.TKERP_FERNET_KEYS))
    ]
