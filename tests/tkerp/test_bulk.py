"""`tkerp.bulk.rows_update`: many rows' fields in one statement, exactly as `bulk_update`
would write them, and never another tenant's row."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext

from orders.models import Order
from tests.factories import OrderFactory
from tkerp.bulk import rows_update
from tkerp.tenancy import tenant_context


def test_rows_update_writes_every_field_of_every_row_in_one_statement(tenant_a):
    with tenant_context(tenant_a):
        orders = [OrderFactory(tenant=tenant_a) for _ in range(3)]
    stamp = datetime(2026, 5, 4, 3, 2, 1, 123456, tzinfo=UTC)
    for n, order in enumerate(orders):
        order.city = f"Springfield {n} \"quoted\" \\ {{braces}} 'it's'"
        order.original_address = {"line1": f"{n} Main St", "nested": {"a": [1, None, "x"]}}
        order.reviewed_at = stamp if n else None
        order.total = Decimal("1234567.89")
        order.address_masked = bool(n % 2)

    with tenant_context(tenant_a), CaptureQueriesContext(connection) as queries:
        rows_update(
            Order,
            orders,
            ["city", "original_address", "reviewed_at", "total", "address_masked"],
            tenant_id=tenant_a.pk,
        )

    assert len(queries) == 1
    for n, order in enumerate(orders):
        stored = Order._base_manager.get(pk=order.pk)
        assert stored.city == order.city
        assert stored.original_address == order.original_address
        assert stored.reviewed_at == (stamp if n else None)  # every microsecond kept
        assert stored.total == Decimal("1234567.89")
        assert stored.address_masked is bool(n % 2)


def test_rows_update_leaves_another_tenants_rows_alone(tenant_a, tenant_b):
    with tenant_context(tenant_b):
        theirs = OrderFactory(tenant=tenant_b, city="Bravo City")
    theirs.city = "Taken over"

    with tenant_context(tenant_a):
        rows_update(Order, [theirs], ["city"], tenant_id=tenant_a.pk)

    assert Order._base_manager.get(pk=theirs.pk).city == "Bravo City"
