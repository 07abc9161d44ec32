"""Creators from the platform: `sandbox live` credits its orders to a creator in TikTok's
affiliate orders, the connector reads them over real HTTP, the orders keep them across syncs,
and live sessions attribute orders by them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from live.creators import session_creators_sync
from live.models import LiveSession
from live.sessions import session_orders, session_orders_sql
from orders.models import Order
from sandbox.actions import sandbox_credit_creator, sandbox_live
from sandbox.models import SandboxAffiliateOrder, SandboxStore
from shops.platforms import connector_for
from tests.e2e.helpers import add_orders, connect_shop, platform_cancels, sync_now
from tests.sandbox.test_live import FakeTime
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def streamed(tenant_a):
    """A TikTok shop whose sandbox ran a 30-order live stream by `sunny.live`, two orders
    another creator sold, and three nobody did; all synced into tkerp."""
    shop, store = connect_shop(tenant_a, "tiktok")
    start = timezone.now() - timedelta(minutes=5)
    plain = add_orders(store, 3, start=start)
    fake = FakeTime()
    with tenant_context(tenant_a):
        result = sandbox_live(
            shop=shop,
            orders=30,
            minutes=1,
            seed=7,
            cancel_rate=0,
            webhooks=False,
            creator="sunny.live",
            sleep=fake.sleep,
            clock=fake.clock,
        )
    assert result.orders == 30
    others = add_orders(store, 2, start=start, seed=50)
    assert (
        sandbox_credit_creator(
            store=store, order_pks=[o.pk for o in others], creator="other.creator"
        )
        == 2
    )
    sync_now(shop)
    session = LiveSession._base_manager.create(
        tenant=tenant_a,
        shop=shop,
        title="Friday live",
        creator_username="Sunny.Live",  # case does not matter
        # The sandbox places its spike orders up to two hours back.
        starts_at=start - timedelta(hours=3),
        ends_at=timezone.now() + timedelta(hours=1),
    )
    return {
        "shop": shop,
        "store": store,
        "session": session,
        "plain": [o.order_id for o in plain],
        "others": [o.order_id for o in others],
    }


def test_the_live_command_credits_its_orders_to_a_creator(tenant_a):
    shop, store = connect_shop(tenant_a, "tiktok")
    out = StringIO()
    call_command(
        "sandbox",
        "live",
        "--shop",
        str(shop.pk),
        "--orders",
        "4",
        "--minutes",
        "0.02",
        "--no-webhooks",
        "--creator",
        "glow.with.sam",
        stdout=out,
    )
    store = SandboxStore.objects.get(pk=store.pk)
    assert (
        SandboxAffiliateOrder.objects.filter(
            store=store, creator_username="glow.with.sam", content_type="LIVE"
        ).count()
        == store.orders.count()
        == 4
    )


class TestCreatorsFromThePlatform:
    def test_the_connector_reads_the_affiliate_orders_over_http(self, tenant_a, streamed):
        connector = connector_for(streamed["shop"], sleep=lambda _: None)
        credits = connector.fetch_affiliate_orders(
            created_since=timezone.now() - timedelta(hours=1),
            created_until=timezone.now() + timedelta(minutes=1),
        )
        by_creator = {}
        for credit in credits:
            by_creator.setdefault(credit.creator_username, []).append(credit)
        assert {name: len(items) for name, items in by_creator.items()} == {
            "sunny.live": 30,
            "other.creator": 2,
        }
        assert all(c.content_type == "LIVE" and c.commission > 0 for c in credits)

    def test_sync_stores_them_and_order_updates_keep_them(self, tenant_a, streamed):
        session = streamed["session"]
        with tenant_context(tenant_a):
            assert session_creators_sync(session=session) == 32
            assert session_creators_sync(session=session) == 0  # nothing new
            live = Order.objects.filter(creator_username="sunny.live")
            assert live.count() == 30
            order = live.order_by("pk").first()
            # 10 % of what the buyer paid for the items, as the platform computed it
            assert order.creator_commission > Decimal("0")
            assert order.creator_content_type == "LIVE"
            commission = order.creator_commission
        # A platform update of the order (the buyer cancels) names no creator: kept.
        platform_cancels(streamed["store"], order.platform_order_id)
        sync_now(streamed["shop"])
        order.refresh_from_db()
        assert order.status == "cancelled"
        assert order.creator_username == "sunny.live"
        assert order.creator_commission == commission

    def test_the_session_counts_its_creators_orders_and_nobodys(self, tenant_a, streamed):
        session = streamed["session"]
        with tenant_context(tenant_a):
            session_creators_sync(session=session)
            ids = set(session_orders(session).values_list("platform_order_id", flat=True))
            assert len(ids) == 33  # 30 by sunny.live, 3 credited to nobody
            assert not ids & set(streamed["others"])
            assert set(streamed["plain"]) <= ids
            # The SQL the rollups use says the same.
            sql, params = session_orders_sql(tenant_id=tenant_a.pk, session_ids=[session.pk])
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT order_id FROM ({sql}) so", params)
                from_sql = {row[0] for row in cursor.fetchall()}
            assert from_sql == set(session_orders(session).values_list("pk", flat=True))

    def test_the_minute_task_fills_running_sessions(self, tenant_a, streamed):
        from live.tasks import sync_live_creators

        # The task itself, as a worker runs it: no tenant scope to start with.
        result = sync_live_creators()
        assert result == {"sessions": 1, "orders_changed": 32, "failed": 0}
        assert sync_live_creators()["orders_changed"] == 0


def test_the_admin_action_asks_the_platform(client_a, tenant_a, streamed):
    from django.urls import reverse

    session = streamed["session"]
    response = client_a.post(
        reverse("admin:live_livesession_changelist"),
        {"action": "fetch_creators", "_selected_action": [session.pk]},
        follow=True,
    )
    assert "32 orders now name their creator." in response.content.decode()
    assert Order._base_manager.filter(tenant=tenant_a, creator_username="sunny.live").count() == 30
