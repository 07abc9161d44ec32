"""`tkerp.db.durability.commits_deferred`: the block's commits do not wait for the disk, and the
connection waits again afterwards however the block ends."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from orders.models import Order
from tests.factories import OrderFactory
from tkerp.db.durability import commits_deferred
from tkerp.tenancy import tenant_context


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.fixture
def waiting(db):
    """The connection waits for the disk, as a production server's does (the embedded server of
    the demo and tests is set not to)."""
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO on")


def test_the_block_commits_without_waiting_and_the_connection_waits_again(waiting):
    with commits_deferred():
        assert _synchronous_commit() == "off"
    assert _synchronous_commit() == "on"


def test_the_block_puts_back_the_sessions_own_setting(waiting):
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO remote_write")
    with commits_deferred():
        assert _synchronous_commit() == "off"
    assert _synchronous_commit() == "remote_write"


def test_a_block_failing_in_its_own_transaction_leaves_the_connection_waiting(waiting, tenant_a):
    with tenant_context(tenant_a):
        order = OrderFactory(tenant=tenant_a)
        with pytest.raises(IntegrityError), commits_deferred(), transaction.atomic():
            Order.objects.create(
                tenant=tenant_a, shop=order.shop, platform_order_id=order.platform_order_id
            )
    assert _synchronous_commit() == "on"
