"""django-q2 tasks of the orders app: thin callers of the domain functions.

Each is idempotent and selects its work by state, so a re-delivered or overlapping run is safe.
"""

from __future__ import annotations

from orders.sla import sla_sweep
from tkerp.tenancy import task_entry


@task_entry
def sla_sweep_task() -> dict:
    """Every minute: SLA states and alerts, shop figures, stuck orders, the cancellation inbox
    (`orders.sla.sla_sweep`, which visits each tenant under its own scope)."""
    return {str(tenant_id): result for tenant_id, result in sla_sweep().items()}
