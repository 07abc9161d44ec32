"""django-q2 tasks of the house framework: thin callers that take ids (see tkerp.jobs)."""

from __future__ import annotations

from shops.models import Tenant
from tkerp.jobs import job_execute as job_run
from tkerp.tenancy import task_entry


@task_entry
def job_execute(job_id: int, tenant_id: int) -> dict:
    """Run one background job of one tenant; a no-op once it finished or while it runs."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        return {"job": job_id, "status": "skipped", "error": "tenant deleted"}
    job = job_run(job_id=job_id, tenant=tenant)
    return {"job": job_id, "status": job.status if job is not None else "skipped"}


@task_entry
def idempotency_prune_task() -> int:
    """Daily: forget the provider API's Idempotency-Keys older than a day (every tenant's)."""
    from tkerp.api.idempotency import idempotency_prune

    return idempotency_prune()
