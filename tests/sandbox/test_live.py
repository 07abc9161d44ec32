"""`manage.py sandbox live`: a live stream's orders dripping into a sandbox on a curve."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from sandbox.actions import live_schedule, sandbox_live
from sandbox.base import SandboxInputError, reset_rate_limits
from sandbox.models import SandboxStore, SandboxWebhook
from shops.models import WebhookDelivery
from tests.factories import ListingFactory, ShopFactory, SkuFactory
from tkerp.tenancy import tenant_context


@pytest.fixture(autouse=True)
def fresh_sandbox_rate_limits():
    reset_rate_limits()


def live_shop(tenant, platform: str = "tiktok"):
    shop = ShopFactory(tenant=tenant, platform=platform, name=f"Live {platform}")
    for number in range(3):
        sku = SkuFactory(tenant=tenant, code=f"LIVE-{platform}-{number}", cost=Decimal("6"))
        ListingFactory(tenant=tenant, shop=shop, sku=sku)
    return shop


def store_of(shop) -> SandboxStore:
    shop.refresh_from_db()
    return SandboxStore.objects.get(platform=shop.platform, shop_key=shop.platform_shop_id)


class FakeTime:
    """A clock that only moves when slept on; `interrupt_at` raises Ctrl-C on that sleep."""

    def __init__(self, interrupt_at: int | None = None):
        self.now = 0.0
        self.sleeps: list[float] = []
        self.interrupt_at = interrupt_at

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.interrupt_at is not None and len(self.sleeps) == self.interrupt_at:
            raise KeyboardInterrupt
        self.now += seconds


class TestTheSchedule:
    @pytest.mark.parametrize(
        ("orders", "minutes"), [(2800, 20), (1, 0.02), (7, 3), (500, 0.5), (3, 10)]
    )
    def test_counts_add_up_to_the_orders(self, orders, minutes):
        schedule = live_schedule(orders=orders, minutes=minutes, seed=4)
        assert sum(tick.orders for tick in schedule) == orders
        assert all(tick.orders >= 0 for tick in schedule)
        assert schedule[0].at == 0
        assert [tick.at for tick in schedule] == sorted(tick.at for tick in schedule)
        assert schedule[-1].at < minutes * 60

    def test_a_burst_first_then_a_tail(self):
        schedule = live_schedule(orders=2800, minutes=20, seed=1)
        per_minute = [sum(t.orders for t in schedule[m * 60 : (m + 1) * 60]) for m in range(20)]
        first_quarter = sum(per_minute[:5])
        assert first_quarter >= 0.65 * 2800
        assert max(per_minute) == max(per_minute[:3])  # the peak is in the first minutes
        assert max(per_minute) >= 3 * 2800 / 20
        # The tail keeps going to the end, thinner and thinner.
        assert all(count > 0 for count in per_minute)
        assert per_minute[-1] < per_minute[5] < per_minute[1]

    def test_the_same_seed_gives_the_same_stream(self):
        one = live_schedule(orders=900, minutes=5, cancel_rate=0.05, seed=11)
        assert one == live_schedule(orders=900, minutes=5, cancel_rate=0.05, seed=11)
        assert one != live_schedule(orders=900, minutes=5, cancel_rate=0.05, seed=12)

    def test_cancellation_requests_come_later_from_buyers_of_landed_orders(self):
        schedule = live_schedule(orders=2800, minutes=20, cancel_rate=0.03, seed=2)
        landed: dict[int, float] = {}
        asked = []
        for tick in schedule:
            for _ in range(tick.orders):
                landed[len(landed)] = tick.at
            for index in tick.cancel:
                # A minute or more after the order, unless the window ends first.
                assert tick.at - landed[index] >= 60 or (
                    tick is schedule[-1] and tick.at > landed[index]
                )
                asked.append(index)
        assert len(asked) == len(set(asked)) == 84
        # Some in the second half of the window: requests keep arriving after the burst.
        assert any(tick.cancel for tick in schedule[600:])

    @pytest.mark.parametrize(
        ("orders", "minutes", "rate", "message"),
        [
            (0, 5, 0.03, "at least one order"),
            (10, 0, 0.03, "more than 0 minutes"),
            (10, 5, 1.5, "between 0 and 1"),
        ],
    )
    def test_impossible_streams_are_refused(self, orders, minutes, rate, message):
        with pytest.raises(SandboxInputError, match=message):
            live_schedule(orders=orders, minutes=minutes, cancel_rate=rate)


@pytest.mark.django_db
class TestTheStream:
    def test_orders_land_on_time_without_waiting_in_tests(self, tenant_a):
        shop = live_shop(tenant_a)
        fake = FakeTime()
        reports = []
        with tenant_context(tenant_a):
            result = sandbox_live(
                shop=shop,
                orders=60,
                minutes=1,
                seed=3,
                cancel_rate=0.1,
                webhooks=False,
                progress=lambda state: reports.append((state.elapsed, state.orders)),
                sleep=fake.sleep,
                clock=fake.clock,
            )
        store = store_of(shop)
        assert result.orders == store.orders.count() == 60
        assert result.cancellations == 6
        assert store.cancellations.count() == 6
        assert not result.interrupted
        # It slept its way through the window, tick by tick, and never longer than a tick.
        assert fake.now == pytest.approx(59.0)
        assert max(fake.sleeps) <= 1.0
        assert reports[-1] == (59.0, 60)
        assert len(reports) >= 10  # every 5 s, and at the end
        assert not SandboxWebhook.objects.exists()

    def test_ctrl_c_stops_cleanly_with_what_landed(self, tenant_a):
        shop = live_shop(tenant_a)
        fake = FakeTime(interrupt_at=8)
        with tenant_context(tenant_a):
            result = sandbox_live(
                shop=shop, orders=500, minutes=1, seed=3, webhooks=False,
                sleep=fake.sleep, clock=fake.clock,
            )  # fmt: skip
        expected = sum(t.orders for t in live_schedule(orders=500, minutes=1, seed=3)[:8])
        assert result.interrupted
        assert 0 < result.orders == expected == store_of(shop).orders.count() < 500


@pytest.mark.django_db
class TestTheCommand:
    def run(self, *args: str) -> str:
        out = StringIO()
        call_command("sandbox", "live", *args, stdout=out)
        return out.getvalue()

    def test_a_short_stream_lands_orders_and_their_webhooks(self, tenant_a):
        shop = live_shop(tenant_a)
        output = self.run("--shop", str(shop.pk), "--orders", "12", "--minutes", "0.02",
                          "--seed", "5", "--cancel-rate", "0.25")  # fmt: skip
        store = store_of(shop)
        assert store.orders.count() == 12
        assert store.cancellations.count() == 3
        # Delivered to tkerp's own webhook endpoint, which recorded each one for its shop.
        deliveries = WebhookDelivery._base_manager.filter(shop=shop)
        assert deliveries.filter(topic="ORDER_STATUS_CHANGE").count() == 12
        assert deliveries.filter(topic="CANCELLATION_STATUS_CHANGE").count() == 3
        ordered = set(store.orders.values_list("order_id", flat=True))
        assert {d.platform_order_ids[0] for d in deliveries} == ordered
        assert "12 / 12 orders" in output and "/min" in output
        summary = output.strip().splitlines()[-1]
        assert summary.startswith("Done after 00:0")
        assert "12 of 12 orders and 3 cancellation requests" in summary
        assert "webhooks: 15 delivered, 0 not" in summary

    def test_without_webhooks_the_sync_has_to_find_them(self, tenant_a):
        shop = live_shop(tenant_a)
        output = self.run("--shop", str(shop.pk), "--orders", "5", "--minutes", "0.01",
                          "--no-webhooks")  # fmt: skip
        assert store_of(shop).orders.count() == 5
        assert not SandboxWebhook.objects.exists()
        assert not WebhookDelivery._base_manager.exists()
        assert "webhooks" not in output.strip().splitlines()[-1]

    def test_shopify_sends_its_order_webhooks_too(self, tenant_a):
        shop = live_shop(tenant_a, "shopify")
        self.run("--shop", str(shop.pk), "--orders", "4", "--minutes", "0.01", "--seed", "1")
        deliveries = WebhookDelivery._base_manager.filter(shop=shop)
        assert deliveries.filter(topic="orders/create").count() == 4

    def test_a_platform_without_webhooks_leaves_it_to_the_sync(self, tenant_a):
        shop = live_shop(tenant_a, "ebay")
        output = self.run("--shop", str(shop.pk), "--orders", "3", "--minutes", "0.01")
        assert store_of(shop).orders.count() == 3
        assert "the minute sync picks the orders up" in output

    def test_bad_input_is_a_clear_error_and_writes_nothing(self, tenant_a):
        shop = live_shop(tenant_a)
        with pytest.raises(CommandError, match="more than 0 minutes"):
            self.run("--shop", str(shop.pk), "--orders", "5", "--minutes", "0")
        with pytest.raises(CommandError, match="shop 999999 does not exist"):
            self.run("--shop", "999999", "--orders", "5", "--minutes", "1")
        assert not SandboxStore.objects.exists()
