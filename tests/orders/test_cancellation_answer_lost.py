"""An answer the platform took, whose recording here was lost (the worker died after the call),
is recorded from the platform's own final status by the next sync: the request does not stay
pending, with its alert open, forever."""

import pytest

from orders import cancellations
from orders.models import CancellationRequest, CancellationStatus, Order, OrderStatus
from orders.sla import sla_sweep_tenant
from tests.factories import TenantOrderPolicyFactory
from tests.orders.test_cancellations import requested, sandbox_answers, sync
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def test_an_auto_approval_that_died_after_the_platform_call_is_recorded_by_the_next_sync(
    tenant_a, monkeypatch
):
    shop, store, [request] = requested(tenant_a, "tiktok")
    TenantOrderPolicyFactory._meta.model._base_manager.filter(tenant=tenant_a).update(
        cancel_auto_approve=True
    )
    real_event = cancellations.order_event_add

    def killed(**kwargs):
        raise RuntimeError("worker killed")

    monkeypatch.setattr(cancellations, "order_event_add", killed)
    sla_sweep_tenant(tenant=tenant_a)  # the sweep logs the failure and goes on
    monkeypatch.setattr(cancellations, "order_event_add", real_event)
    assert sandbox_answers(store)[request.platform_order_id][0] == "approve"
    with tenant_context(tenant_a):
        assert CancellationRequest.objects.get().status == CancellationStatus.PENDING

    sync(shop)
    sla_sweep_tenant(tenant=tenant_a)
    with tenant_context(tenant_a):
        row = CancellationRequest.objects.get()
        order = Order.objects.get(pk=row.order_id)
    assert row.status in (CancellationStatus.APPROVED, CancellationStatus.AUTO_CANCELLED), (
        row.status,
        row.decision,
        row.platform_status,
    )
    assert row.answered_at is not None and order.status == OrderStatus.CANCELLED
