"""A claimed availability push that never records its outcome (the worker killed between the
claim and the platform's answer) is not lost: the listing is due again once the claim's lease
ends, and the next run pushes it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import push as push_module
from inventory.availability import listing_available, skus_changed
from inventory.models import Listing, Sku
from inventory.push import PUSH_CLAIM_LEASE, push_pending
from inventory.stock import stock_adjust, stock_count
from inventory.tasks import flush_shop_pushes, push_due_listings
from sandbox.base import reset_rate_limits
from tests.e2e.helpers import connect_shop
from tests.factories import WarehouseFactory
from tests.inventory.test_push_sandboxes import sandbox_quantity
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def mug_listing(tenant_a, settings):
    settings.TKERP_HTTP_BACKOFF_BASE = 0.01
    reset_rate_limits()
    shop, _ = connect_shop(tenant_a, "shopify", sku_codes=("MUG-01",))
    warehouse = WarehouseFactory(tenant=tenant_a, code="MAIN")
    mug = Sku._base_manager.get(tenant=tenant_a, code="MUG-01")
    with tenant_context(tenant_a):
        stock_count(sku=mug, warehouse=warehouse, counted=20, user=None)
        push_pending(shop=shop, force=True)
        stock_adjust(sku=mug, warehouse=warehouse, delta=-15, kind="adjust", user=None, note="x")
        skus_changed(tenant=tenant_a, sku_ids=[mug.pk])
    return Listing._base_manager.select_related("shop").get(shop=shop, sku=mug)


def test_a_push_killed_after_its_claim_is_sent_once_the_lease_ends(
    tenant_a, mug_listing, monkeypatch
):
    shop = mug_listing.shop

    def killed(*args, **kwargs):
        raise SystemExit("worker killed")

    real_send = push_module._send
    monkeypatch.setattr(push_module, "_send", killed)
    with tenant_context(tenant_a), pytest.raises(SystemExit):
        push_pending(shop=shop, force=True)
    monkeypatch.setattr(push_module, "_send", real_send)
    mug_listing.refresh_from_db()
    shown = sandbox_quantity(mug_listing)
    assert shown != listing_available(mug_listing) == 5  # the new number never left
    # The claim holds the listing off the list while it might still be in flight...
    assert mug_listing.push_due_at > timezone.now() + PUSH_CLAIM_LEASE - timedelta(seconds=30)
    flush_shop_pushes(tenant_a.pk, shop.pk, sleep=lambda seconds: None)
    assert sandbox_quantity(mug_listing) == shown
    # ...and once the lease has run out, the minute sweeper finds it due and it is pushed.
    Listing._base_manager.filter(pk=mug_listing.pk).update(
        push_due_at=timezone.now() - timedelta(seconds=1)
    )
    assert push_due_listings()["queued"] == [shop.pk]
    flush_shop_pushes(tenant_a.pk, shop.pk, sleep=lambda seconds: None)
    mug_listing.refresh_from_db()
    assert sandbox_quantity(mug_listing) == listing_available(mug_listing) == 5
    assert mug_listing.push_due_at is None and mug_listing.push_requested_at is None


def test_a_stock_change_during_a_push_keeps_the_listing_due(tenant_a, mug_listing, monkeypatch):
    """The outcome clears the due mark only where it is still the claim's lease."""
    shop = mug_listing.shop
    real_send = push_module._send

    def send_while_stock_changes(shop_, updates):
        results = real_send(shop_, updates)
        with tenant_context(tenant_a):
            # A change made due sooner than the lease, while the push was in flight
            skus_changed(tenant=tenant_a, sku_ids=[mug_listing.sku_id])
            Listing._base_manager.filter(pk=mug_listing.pk).update(
                push_due_at=timezone.now() + timedelta(seconds=1)
            )
        return results

    monkeypatch.setattr(push_module, "_send", send_while_stock_changes)
    with tenant_context(tenant_a):
        assert push_pending(shop=shop, force=True).pushed == 1
    mug_listing.refresh_from_db()
    assert mug_listing.push_due_at is not None


def test_a_reconcile_never_leaves_the_platform_on_a_number_a_push_overtook(
    tenant_a, mug_listing, monkeypatch
):
    """The reconcile reads the platform and computes its repair, then stock moves and a push
    publishes the new number before the repair lands: the repair's older number must not be
    the platform's last word."""
    shop = mug_listing.shop
    real_connector_for = push_module.connector_for
    raced = []

    def connector_for(shop_):
        connector = real_connector_for(shop_)
        real_set = connector.set_inventory

        def set_after_a_push(*, updates):
            if not raced:
                raced.append(True)
                with tenant_context(tenant_a):
                    # Another worker: three units go, and their push goes out first.
                    stock_adjust(
                        sku=mug_listing.sku,
                        warehouse=mug_listing.sku.stock_levels.get().warehouse,
                        delta=-3,
                        kind="adjust",
                        user=None,
                        note="x",
                    )
                    skus_changed(tenant=tenant_a, sku_ids=[mug_listing.sku_id])
                    assert push_pending(shop=shop, force=True).pushed == 1
            return real_set(updates=updates)

        connector.set_inventory = set_after_a_push
        return connector

    monkeypatch.setattr(push_module, "connector_for", connector_for)
    with tenant_context(tenant_a):
        report = push_module.shop_reconcile(shop=shop)
    assert [r.quantity for r in report.repaired] == [5]  # computed before the push

    # What the queued flush does next.
    flush_shop_pushes(tenant_a.pk, shop.pk, sleep=lambda seconds: None)
    mug_listing.refresh_from_db()
    assert sandbox_quantity(mug_listing) == listing_available(mug_listing) == 2
