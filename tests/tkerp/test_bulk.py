"""`tkerp.bulk`: many rows inserted (`rows_copy`, COPY through the connection's staging table)
or updated (`rows_update`) in few statements, exactly as the ORM would store them, and never
another tenant's row."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal

import pghistory
import pytest
from django.db import ProgrammingError, connection, transaction
from django.test.utils import CaptureQueriesContext

from orders.models import Order, OrderEvent
from tests.factories import OrderFactory
from tkerp.bulk import ids_take, rows_copy, rows_update
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


def _events(order, count: int, kind: str) -> list[OrderEvent]:
    return [
        OrderEvent(tenant_id=order.tenant_id, order_id=order.pk, kind=kind, data={"n": n})
        for n in range(count)
    ]


def test_rows_copy_twice_in_one_transaction_inserts_each_batch_once(tenant_a):
    """The connection's staging table is emptied by each move: the second call must not carry
    the first call's rows again (that would be a duplicate key)."""
    with tenant_context(tenant_a):
        order = OrderFactory(tenant=tenant_a)
        with transaction.atomic(), CaptureQueriesContext(connection) as queries:
            first = rows_copy(OrderEvent, _events(order, 10, "bulk.first"))
            second = rows_copy(OrderEvent, _events(order, 12, "bulk.second"))

    # Per call: the ids with the staging table, and the move (COPY is not a captured query).
    assert len(queries) == 4
    stored = OrderEvent._base_manager.filter(order=order, kind__startswith="bulk.")
    assert sorted(stored.values_list("pk", flat=True)) == sorted(e.pk for e in first + second)
    assert sorted(e.data["n"] for e in stored if e.kind == "bulk.second") == list(range(12))


def test_ids_come_from_the_tables_sequence_ascending_in_the_order_of_the_rows(tenant_a):
    """Pages keep their turn by id (a batch reserves in ascending id): the ids handed out, and
    those `rows_copy` gives its rows, ascend in the order asked, past every id stored."""
    with tenant_context(tenant_a):
        order = OrderFactory(tenant=tenant_a)
        with transaction.atomic():
            before = rows_copy(OrderEvent, _events(order, 10, "bulk.before"))
            taken = ids_take(OrderEvent, 40)
            after = rows_copy(OrderEvent, _events(order, 30, "bulk.after"))
        stored = dict(
            OrderEvent._base_manager.filter(kind="bulk.after").values_list("pk", "data__n")
        )

    assert ids_take(OrderEvent, 0) == []
    ids = [event.pk for event in before] + taken + [event.pk for event in after]
    assert ids == sorted(ids) and len(set(ids)) == 80
    # Each instance holds the id its row was stored under.
    assert stored == {event.pk: event.data["n"] for event in after}
    assert [stored[event.pk] for event in after] == list(range(30))


@pytest.mark.parametrize("actor", [None, "task"], ids=["no-actor", "audited"])
def test_rows_copy_reads_its_ids_with_or_without_an_audit_actor(tenant_a, actor):
    """Under an actor (every task, command and request) the audit's SQL wrapper moves the cursor
    to a statement's last result; without one psycopg stays on the first: both must read the
    ids (a sync task's pipeline failed on this)."""
    with tenant_context(tenant_a):
        order = OrderFactory(tenant=tenant_a)
        context = pghistory.context(actor=actor) if actor else contextlib.nullcontext()
        with context, transaction.atomic():
            stored = rows_copy(OrderEvent, _events(order, 10, "bulk.actor"))
    assert len({event.pk for event in stored}) == 10
    assert OrderEvent._base_manager.filter(kind="bulk.actor").count() == 10


def test_rows_copy_after_a_rolled_back_first_use_still_inserts(tenant_a):
    """A staging table made inside a transaction that rolls back is gone with it: the next
    call on the same connection must make it again, not assume it is there."""
    with tenant_context(tenant_a):
        order = OrderFactory(tenant=tenant_a)
        with pytest.raises(RuntimeError), transaction.atomic():
            rows_copy(OrderEvent, _events(order, 10, "bulk.undone"))
            raise RuntimeError("roll back")
        rows_copy(OrderEvent, _events(order, 10, "bulk.kept"))

    kinds = list(OrderEvent._base_manager.filter(order=order).values_list("kind", flat=True))
    assert kinds.count("bulk.kept") == 10
    assert "bulk.undone" not in kinds


def test_rows_copy_refuses_another_tenants_rows(tenant_a, tenant_b, strict_database):
    with tenant_context(tenant_b):
        theirs = OrderFactory(tenant=tenant_b)
    with tenant_context(tenant_a), pytest.raises(ProgrammingError), transaction.atomic():
        rows_copy(OrderEvent, _events(theirs, 10, "bulk.foreign"))

    with tenant_context(tenant_b):
        assert not OrderEvent.objects.filter(kind="bulk.foreign").exists()
