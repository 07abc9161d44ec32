"""shops.sync: the polling pass, over real HTTP against the platform sandboxes.

Nothing here mocks a connector: orders are generated in the sandbox store, and the shop's own
connector fetches them through the sandbox's HTTP API. To simulate a worker dying mid-pass, a
test makes our own ingest function raise once.
"""

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

import shops.admin_sync  # noqa: F401 - registers the sync admins (the lead wires it for real)
from orders.ingest import orders_ingest, orders_store
from orders.models import Order, OrderEvent, OrderLine
from sandbox.base import sandbox_for
from sandbox.models import SandboxOrder, SandboxStore
from shops import sync as sync_module
from shops import tasks
from shops.admin_sync import ShopSyncAdminMixin
from shops.models import Shop, SyncRun, WebhookDelivery
from shops.platforms import connector_for
from shops.platforms.base import PlatformError
from shops.schedules import schedules_ensure
from shops.sync import rejects_alert_key, shop_sync, sync_alert_key
from tests.e2e.helpers import (
    LoopbackReceiver,
    add_orders,
    connect_shop,
    django_q_sync,
)
from tests.factories import ShopFactory, SyncRunFactory, WebhookDeliveryFactory
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks
from tkerp.admin import TenantModelAdmin
from tkerp.models import Alert
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

PLATFORMS = ["tiktok", "shopify"]


@pytest.fixture(params=PLATFORMS)
def platform(request):
    return request.param


@pytest.fixture
def connected(tenant_a, platform):
    return connect_shop(tenant_a, platform)


@pytest.fixture
def shop(connected) -> Shop:
    return connected[0]


@pytest.fixture
def store(connected) -> SandboxStore:
    return connected[1]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def connector(shop, sleeps):
    """The shop's real connector; retries recorded instead of slept."""
    return connector_for(shop, sleep=sleeps.append, backoff_base=0.01, max_retries=1)


def sync(shop, connector, **kwargs) -> SyncRun:
    with tenant_context(shop.tenant):
        return shop_sync(shop=shop, connector=connector, **kwargs)


def stored_ids(tenant) -> list[str]:
    with tenant_context(tenant):
        return sorted(Order.objects.values_list("platform_order_id", flat=True))


def expected_line_count(connector, order_ids) -> int:
    return sum(
        len(order.lines) for order in connector.fetch_orders_by_id(platform_order_ids=order_ids)
    )


def spike_size(connector) -> int:
    """Two and a half pages: enough to page, small enough to stay quick."""
    return 2 * connector.page_size + connector.page_size // 2


class TestPass:
    def test_a_spike_is_stored_exactly_and_a_second_pass_changes_nothing(
        self, shop, store, connector
    ):
        start = timezone.now() - timedelta(hours=2)
        count = spike_size(connector)
        generated = add_orders(store, count, start=start)
        ids = sorted(order.order_id for order in generated)

        run = sync(shop, connector)

        assert run.status == "success", run.error
        assert (run.pages, run.created, run.updated, run.rejected) == (3, count, 0, 0)
        assert stored_ids(shop.tenant) == ids
        with tenant_context(shop.tenant):
            assert OrderLine.objects.count() == expected_line_count(connector, ids)
            lines = OrderLine.objects.count()
            events = OrderEvent.objects.count()
            stamps = dict(Order.objects.values_list("pk", "updated_at"))
        shop.refresh_from_db()
        newest = max(order.updated for order in generated)
        assert abs(shop.sync_watermark - newest) < timedelta(seconds=1)
        assert shop.consecutive_sync_failures == 0 and shop.last_sync_success_at is not None
        assert shop.sync_lease_until is None

        again = sync(shop, connector)

        assert again.status == "success" and (again.created, again.updated) == (0, 0)
        with tenant_context(shop.tenant):
            assert OrderLine.objects.count() == lines
            assert OrderEvent.objects.count() == events
            assert dict(Order.objects.values_list("pk", "updated_at")) == stamps

    def test_pages_commit_without_waiting_for_the_disk_and_the_watermark_waits(
        self, shop, store, connector
    ):
        """The page and its pipeline commit deferred (tkerp.db.durability); the watermark's
        commit, which makes them durable with it, waits, and so does the connection after."""
        add_orders(store, spike_size(connector), start=timezone.now() - timedelta(hours=2))
        seen: dict[str, set[str]] = {"orders": set(), "watermark": set()}
        with connection.cursor() as cursor:  # as a production server (the embedded one is off)
            cursor.execute("SET synchronous_commit TO on")

        def observe(execute, sql, params, many, context):
            head = sql.lstrip()[:30].upper()
            kind = None
            if head.startswith(('INSERT INTO "ORDERS_ORDER"', 'UPDATE "ORDERS_ORDER"')):
                kind = "orders"
            elif head.startswith('UPDATE "SHOPS_SHOP"') and "sync_watermark" in sql:
                kind = "watermark"
            if kind:
                # The raw connection: not through Django's wrappers, so not observed itself.
                setting = connection.connection.execute("SHOW synchronous_commit").fetchone()
                seen[kind].add(setting[0])
            return execute(sql, params, many, context)

        with connection.execute_wrapper(observe):
            run = sync(shop, connector)

        assert run.status == "success", run.error
        assert seen == {"orders": {"off"}, "watermark": {"on"}}
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"

    def test_a_platform_change_updates_just_that_order(self, shop, store, connector, platform):
        start = timezone.now() - timedelta(hours=1)
        first, second = add_orders(store, 2, start=start)
        sync(shop, connector)
        sandbox_for(platform).request_cancellation(store=store, order=first)

        run = sync(shop, connector)

        assert run.status == "success" and (run.created, run.updated) == (0, 1)
        with tenant_context(shop.tenant):
            changed = Order.objects.get(platform_order_id=first.order_id)
            assert changed.events.filter(kind="platform_update").count() == 1
            untouched = Order.objects.get(platform_order_id=second.order_id)
            assert not untouched.events.filter(kind="platform_update").exists()

    def test_the_first_pass_looks_back_the_initial_window_only(self, shop, store, connector):
        now = timezone.now()
        add_orders(store, 1, start=now - timedelta(days=8), seed=1)
        (recent,) = add_orders(store, 1, start=now - timedelta(days=6), seed=2)
        run = sync(shop, connector)
        assert run.status == "success"
        assert stored_ids(shop.tenant) == [recent.order_id]

    def test_a_pass_starts_the_overlap_before_the_watermark(self, shop, store, connector):
        now = timezone.now()
        (before,) = add_orders(store, 1, start=now - timedelta(minutes=30), seed=1)
        (within,) = add_orders(store, 1, start=now - timedelta(minutes=9), seed=2)
        Shop._base_manager.filter(pk=shop.pk).update(sync_watermark=now - timedelta(minutes=10))
        run = sync(shop, connector)  # from watermark - 120 s: 12 minutes ago
        assert run.created == 1
        assert stored_ids(shop.tenant) == [within.order_id]
        assert run.watermark_from == now - timedelta(minutes=10)
        del before

    def test_an_update_older_than_the_stored_one_is_ignored(self, shop, store, connector):
        (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=30))
        # A webhook already stored a newer version of the order than the platform now lists
        # (its search index lags): the poll must not roll it back.
        (newer,) = connector.fetch_orders_by_id(platform_order_ids=[generated.order_id])
        newer.updated_at += timedelta(minutes=5)
        newer.platform_status = "FROM-THE-FUTURE"
        orders_ingest(shop=shop, platform_orders=[newer], source="webhook")

        run = sync(shop, connector)

        assert run.status == "success" and (run.created, run.updated, run.skipped) == (0, 0, 1)
        with tenant_context(shop.tenant):
            assert Order.objects.get().platform_status == "FROM-THE-FUTURE"

    def test_one_malformed_order_is_rejected_by_id_and_the_rest_of_the_page_goes_in(
        self, shop, store, connector, platform
    ):
        first, bad, last = add_orders(store, 3, start=timezone.now() - timedelta(hours=1))
        row = SandboxOrder.objects.get(pk=bad.pk)
        if platform == "tiktok":
            row.payload["payment"]["total_amount"] = "12,50"
        else:
            row.payload["total_price"] = "12,50"
        row.save()

        run = sync(shop, connector)

        assert run.status == "success", run.error
        assert stored_ids(shop.tenant) == sorted([first.order_id, last.order_id])
        assert run.rejected == 1
        (reject,) = run.rejects
        assert reject["order"] == bad.order_id and "12,50" in reject["message"]
        assert reject["field"] in ("payment.total_amount", "total_price")
        with tenant_context(shop.tenant):
            alert = Alert.objects.get(key=rejects_alert_key(shop))
            assert bad.order_id in alert.message
        shop.refresh_from_db()
        assert abs(shop.sync_watermark - last.updated) < timedelta(seconds=1)

        again = sync(shop, connector)  # the overlap reads the bad order again: rejected again

        assert again.status == "success", again.error
        assert again.rejected == 1 and (again.created, again.updated) == (0, 0)


def new_orders(tenant) -> int:
    """Stored paid orders the pipeline has not looked at yet (still `new`, nothing reserved,
    no hold): every paid order leaves `new` once stock and review ran on it."""
    with tenant_context(tenant):
        return Order.objects.filter(status="new", paid_at__isnull=False).count()


class TestPipelineBatches:
    def test_the_pipeline_runs_over_several_stored_pages_at_once(
        self, shop, store, connector, settings, monkeypatch
    ):
        settings.TKERP_SYNC_PIPELINE_BATCH = 2 * connector.page_size
        count = spike_size(connector)
        add_orders(store, count, start=timezone.now() - timedelta(hours=1))
        batches = []
        threads = set()
        after_ingest = sync_module.orders_after_ingest

        def recording(**kwargs):
            batches.append(len(kwargs["created_ids"]) + len(kwargs["updated_ids"]))
            threads.add(threading.current_thread())
            return after_ingest(**kwargs)

        monkeypatch.setattr(sync_module, "orders_after_ingest", recording)
        run = sync(shop, connector)

        assert run.status == "success" and run.created == count, run.error
        assert batches == [2 * connector.page_size, count - 2 * connector.page_size]
        # Inside the test's transaction the pipeline runs on the pass's own thread and
        # connection: another could not see the pages (tests/shops/test_sync_pipeline_beside.py).
        assert threads == {threading.current_thread()}
        assert new_orders(shop.tenant) == 0

    def test_a_pass_failing_on_page_three_still_runs_the_pipeline_on_what_it_stored(
        self, shop, store, connector, settings, monkeypatch
    ):
        settings.TKERP_SYNC_PIPELINE_BATCH = 10 * connector.page_size  # no batch fills
        add_orders(store, spike_size(connector), start=timezone.now() - timedelta(hours=1))
        fetch = connector.fetch_orders
        calls = {"n": 0}

        def fails_on_page_three(**kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise PlatformError("the platform went away", platform=shop.platform)
            return fetch(**kwargs)

        monkeypatch.setattr(connector, "fetch_orders", fails_on_page_three)
        run = sync(shop, connector)

        assert run.status == "failed" and "went away" in run.error
        assert run.created == 2 * connector.page_size
        assert len(stored_ids(shop.tenant)) == 2 * connector.page_size
        assert new_orders(shop.tenant) == 0  # ...yet reserved and reviewed before it failed


class TestKillAndRerun:
    def test_a_pass_dying_on_page_three_resumes_with_nothing_missed_or_doubled(
        self, shop, store, connector, monkeypatch
    ):
        count = spike_size(connector)
        generated = add_orders(store, count, start=timezone.now() - timedelta(hours=3))
        calls = {"n": 0}

        def dies_on_page_three(**kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("worker killed")
            return orders_store(**kwargs)

        monkeypatch.setattr(sync_module, "orders_store", dies_on_page_three)
        killed = sync(shop, connector)

        assert killed.status == "failed" and "worker killed" in killed.error
        assert (killed.pages, killed.created) == (2, 2 * connector.page_size)
        assert len(stored_ids(shop.tenant)) == 2 * connector.page_size
        shop.refresh_from_db()
        assert shop.consecutive_sync_failures == 1
        page_two_end = sorted(order.updated for order in generated)[2 * connector.page_size - 1]
        assert abs(shop.sync_watermark - page_two_end) < timedelta(seconds=1)
        assert shop.sync_lease_until is None  # released even though the pass failed

        monkeypatch.setattr(sync_module, "orders_store", orders_store)
        rerun = sync(shop, connector)

        assert rerun.status == "success", rerun.error
        assert rerun.created == count - 2 * connector.page_size
        assert stored_ids(shop.tenant) == sorted(order.order_id for order in generated)
        with tenant_context(shop.tenant):
            ids = [order.order_id for order in generated]
            assert OrderLine.objects.count() == expected_line_count(connector, ids)
        shop.refresh_from_db()
        assert shop.consecutive_sync_failures == 0

    def test_a_run_left_running_by_a_dead_worker_is_closed_by_the_next_pass(
        self, shop, store, connector
    ):
        dead = SyncRunFactory(tenant=shop.tenant, shop=shop, status="running", finished_at=None)
        run = sync(shop, connector)
        dead.refresh_from_db()
        assert run.status == "success"
        assert dead.status == "failed" and "worker stopped" in dead.error


class TestLease:
    def test_a_held_lease_skips_the_pass_and_an_expired_one_does_not(self, shop, connector):
        now = timezone.now()
        Shop._base_manager.filter(pk=shop.pk).update(sync_lease_until=now + timedelta(minutes=5))
        skipped = sync(shop, connector)
        assert skipped.status == "skipped" and skipped.pk is None
        with tenant_context(shop.tenant):
            assert not SyncRun.objects.exists()

        Shop._base_manager.filter(pk=shop.pk).update(sync_lease_until=now - timedelta(seconds=1))
        assert sync(shop, connector).status == "success"

    def test_a_pass_that_lost_its_lease_stops_writing(self, shop, store, connector, monkeypatch):
        add_orders(store, spike_size(connector), start=timezone.now() - timedelta(hours=1))
        fetch = connector.fetch_orders
        calls = {"n": 0}

        def taken_over_after_page_one(**kwargs):
            calls["n"] += 1
            if calls["n"] == 2:  # our lease expired meanwhile; another worker took the shop
                Shop._base_manager.filter(pk=shop.pk).update(sync_lease_token="other")
            return fetch(**kwargs)

        monkeypatch.setattr(connector, "fetch_orders", taken_over_after_page_one)
        run = sync(shop, connector)

        assert run.status == "failed" and "lease" in run.error
        assert run.pages == 1  # page two was rolled back by the lease check
        assert len(stored_ids(shop.tenant)) == connector.page_size
        shop.refresh_from_db()
        assert shop.sync_lease_token == "other"  # the other worker's lease is left alone


class TestFailuresAndAlerts:
    def test_three_failures_raise_one_alert_told_once_and_a_success_resolves_it(
        self, shop, store, connector, sleeps, django_capture_on_commit_callbacks, outbound_loopback
    ):
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["500"])
        with LoopbackReceiver() as receiver, django_q_sync():
            tenant = shop.tenant
            tenant.alert_email = "ops@alpha.example"
            tenant.alert_webhook_url = receiver.url
            tenant.save()
            runs = []
            for _ in range(4):
                with django_capture_on_commit_callbacks(execute=True):
                    runs.append(sync(shop, connector))

            assert [run.status for run in runs] == ["failed"] * 4
            assert "HTTP 500" in runs[0].error
            assert sleeps, "the client retried before giving up"
            shop.refresh_from_db()
            assert shop.consecutive_sync_failures == 4 and "HTTP 500" in shop.last_sync_error
            with tenant_context(tenant):
                (alert,) = Alert.objects.all()
            assert alert.key == sync_alert_key(shop) and alert.shop == shop
            assert alert.occurrences == 2  # raised at the 3rd failure, seen again at the 4th
            assert len(mail.outbox) == 1 and "Order sync failing" in mail.outbox[0].subject
            assert len(receiver.received) == 1
            assert receiver.json()["kind"] == "sync_failing"

            SandboxStore.objects.filter(pk=store.pk).update(fault_rate=0.0)
            recovered = sync(shop, connector)

        assert recovered.status == "success"
        alert.refresh_from_db()
        assert alert.resolved_at is not None
        shop.refresh_from_db()
        assert shop.consecutive_sync_failures == 0 and shop.last_sync_error == ""

    def test_two_failures_raise_nothing(self, shop, store, connector):
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["500"])
        sync(shop, connector)
        sync(shop, connector)
        with tenant_context(shop.tenant):
            assert not Alert.objects.exists()


@pytest.mark.parametrize("platform", ["tiktok"], indirect=True)
def test_a_pending_cancellation_request_puts_an_answer_clock_on_the_order(
    shop, store, connector, platform
):
    (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=20))
    sync(shop, connector)
    sandbox_for(platform).request_cancellation(
        store=store, order=SandboxOrder.objects.get(pk=generated.pk)
    )

    run = sync(shop, connector)

    assert run.status == "success"
    with tenant_context(shop.tenant):
        order = Order.objects.get()
        assert order.cancel_answer_by is not None
        assert order.events.filter(kind="cancel_requested").count() == 1
    sync(shop, connector)
    with tenant_context(shop.tenant):
        assert order.events.filter(kind="cancel_requested").count() == 1


# --- tasks, command, schedules ------------------------------------------------------------------


class TestTasks:
    def test_the_dispatcher_queues_due_shops_once(self, tenant_a, tenant_b, monkeypatch):
        queued = []
        monkeypatch.setattr(tasks, "async_task", lambda *args, **kwargs: queued.append(args))
        now = timezone.now()
        due_a, _ = connect_shop(tenant_a, "tiktok", name="due")
        due_b, _ = connect_shop(tenant_b, "tiktok", name="due too")
        recent, _ = connect_shop(tenant_a, "tiktok", name="recent")
        Shop._base_manager.filter(pk=recent.pk).update(
            last_sync_started_at=now - timedelta(seconds=10)
        )
        running, _ = connect_shop(tenant_a, "tiktok", name="running")
        Shop._base_manager.filter(pk=running.pk).update(sync_lease_until=now + timedelta(minutes=1))
        inactive, _ = connect_shop(tenant_a, "tiktok", name="off", is_active=False)
        ShopFactory(tenant=tenant_a, name="never connected")

        result = tasks.sync_due_shops()

        assert sorted(result["queued"]) == sorted([due_a.pk, due_b.pk])
        assert sorted(queued) == sorted(
            [
                ("shops.tasks.sync_shop", tenant_a.pk, due_a.pk),
                ("shops.tasks.sync_shop", tenant_b.pk, due_b.pk),
            ]
        )
        # Queued but not started yet: the next minute does not queue it again.
        assert tasks.sync_due_shops()["queued"] == []
        del inactive

    def test_sync_shop_runs_a_pass_for_the_named_tenant_only(self, shop, store, tenant_b):
        add_orders(store, 3, start=timezone.now() - timedelta(minutes=5))
        assert tasks.sync_shop(tenant_b.pk, shop.pk)["status"] == "skipped"
        summary = tasks.sync_shop(shop.tenant_id, shop.pk)
        assert summary["status"] == "success" and summary["created"] == 3

    def test_the_command_syncs_one_shop_and_prints_what_it_did(self, shop, store, capsys):
        add_orders(store, 2, start=timezone.now() - timedelta(minutes=5))
        call_command("sync_orders", "--shop", str(shop.pk))
        out = capsys.readouterr().out
        assert f"#{shop.pk}): success" in out and "2 created" in out
        with pytest.raises(CommandError, match="no shop with id 999999"):
            call_command("sync_orders", "--shop", "999999")

    def test_the_command_fails_loudly_when_a_shop_fails(self, shop, store):
        SandboxStore.objects.filter(pk=store.pk).update(fault_rate=1.0, fault_kinds=["503"])
        # The default connector retries with real sleeps: keep the backoff tiny.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("django.conf.settings.TKERP_HTTP_BACKOFF_BASE", 0.001)
            patch.setattr("django.conf.settings.TKERP_HTTP_MAX_RETRIES", 0)
            with pytest.raises(CommandError, match="1 of 1 shop"):
                call_command("sync_orders", "--shop", str(shop.pk))

    def test_schedules_are_created_once(self):
        from django_q.models import Schedule

        schedules_ensure()
        assert schedules_ensure() == []
        names = set(Schedule.objects.values_list("name", "func"))
        assert ("tkerp: sync due shops", "shops.tasks.sync_due_shops") in names
        assert ("tkerp: prune sync history", "shops.tasks.prune_sync_history") in names

    def test_prune_drops_old_runs_and_deliveries_only(self, tenant_a, tenant_b):
        long_ago = timezone.now() - timedelta(days=30)
        old = SyncRunFactory(tenant=tenant_a, started_at=long_ago)
        new = SyncRunFactory(tenant=tenant_b)
        old_delivery = WebhookDeliveryFactory(tenant=tenant_b, received_at=long_ago)
        new_delivery = WebhookDeliveryFactory(tenant=tenant_a)
        assert tasks.prune_sync_history() == {"sync_runs": 1, "webhook_deliveries": 1}
        assert not SyncRun._base_manager.filter(pk=old.pk).exists()
        assert SyncRun._base_manager.filter(pk=new.pk).exists()
        assert not WebhookDelivery._base_manager.filter(pk=old_delivery.pk).exists()
        assert WebhookDelivery._base_manager.filter(pk=new_delivery.pk).exists()


# --- admin ----------------------------------------------------------------------------------------


class TestSyncAdmin:
    def test_sync_runs_are_scoped_to_the_tenant(self, client_a, tenant_a, tenant_b):
        mine = SyncRunFactory(tenant=tenant_a)
        theirs = SyncRunFactory(tenant=tenant_b)
        assert changelist_pks(client_a, SyncRun) == {mine.pk}
        assert_not_found(client_a, admin_url(SyncRun, "change", theirs.pk))

    def test_sync_runs_are_read_only(self, client_a, tenant_a):
        mine = SyncRunFactory(tenant=tenant_a)
        assert client_a.get(admin_url(SyncRun, "add")).status_code == 403
        client_a.post(admin_url(SyncRun, "delete", mine.pk), {"post": "yes"})
        assert SyncRun._base_manager.filter(pk=mine.pk).exists()

    def test_sync_run_changelist_query_count_is_flat(
        self, client_a, tenant_a, django_assert_max_num_queries
    ):
        for _ in range(30):
            SyncRunFactory(tenant=tenant_a)
        with django_assert_max_num_queries(15):
            assert client_a.get(admin_url(SyncRun, "changelist")).status_code == 200


class _ShopAdminUnderTest(ShopSyncAdminMixin, TenantModelAdmin):
    list_display = ("name", "platform")


class TestShopSyncMixin:
    def model_admin(self):
        from django.contrib.admin import AdminSite

        return _ShopAdminUnderTest(Shop, AdminSite(name="sync-test"))

    def request(self, user, method="post"):
        from django.contrib.messages.storage.fallback import FallbackStorage
        from django.test import RequestFactory

        request = getattr(RequestFactory(), method)("/admin/shops/shop/")
        request.user = user
        request.session = {}
        request._messages = FallbackStorage(request)
        return request

    @pytest.mark.parametrize("platform", ["tiktok"], indirect=True)
    def test_columns_come_from_stored_fields(self, shop, user_a):
        model_admin = self.model_admin()
        request = self.request(user_a)
        assert model_admin.get_list_display(request)[-3:] == [
            "last_sync_success",
            "sync_lag",
            "sync_failures",
        ]
        assert model_admin.last_sync_success(shop) == "never"
        shop.last_sync_success_at = timezone.now() - timedelta(minutes=10)
        shop.consecutive_sync_failures = 3
        assert "10\xa0minutes" in str(model_admin.sync_lag(shop))
        assert "color" in str(model_admin.sync_lag(shop))  # 10 min > 3 intervals: flagged
        assert "3" in str(model_admin.sync_failures(shop))

    def test_the_real_shop_admin_changelist_shows_sync_health_without_n_plus_1(
        self, tenant_a, user_a, django_assert_max_num_queries
    ):
        from django.contrib.admin import AdminSite

        from shops.admin import ShopAdmin

        assert issubclass(ShopAdmin, ShopSyncAdminMixin)  # wired in shops/admin.py
        model_admin = ShopAdmin(Shop, AdminSite(name="sync-test"))
        for number in range(12):
            ShopFactory(
                tenant=tenant_a,
                last_sync_success_at=timezone.now() - timedelta(minutes=number),
                consecutive_sync_failures=number % 4,
            )
        request = self.request(user_a, method="get")
        request.tenant, request.available_tenants = tenant_a, [tenant_a]
        with tenant_context(tenant_a):
            with django_assert_max_num_queries(12):
                response = model_admin.changelist_view(request)
                response.render()
            assert response.status_code == 200
            content = response.content.decode()
            assert "Last successful sync" in content and "Consecutive failures" in content
            shop = Shop.objects.first()
            fieldsets = model_admin.get_fieldsets(request, shop)
        assert fieldsets[-1][0] == "Sync status"
        assert "sync_watermark" in model_admin.get_readonly_fields(request, shop)

    @pytest.mark.parametrize("platform", ["tiktok"], indirect=True)
    def test_sync_now_queues_a_pass_per_selected_shop_of_the_tenant(
        self, shop, store, user_a, tenant_b, monkeypatch, django_capture_on_commit_callbacks
    ):
        queued = []
        monkeypatch.setattr(
            "django_q.tasks.async_task", lambda *args, **kwargs: queued.append(args)
        )
        other = ShopFactory(tenant=tenant_b)
        model_admin = self.model_admin()
        request = self.request(user_a)
        with tenant_context(shop.tenant):
            assert "sync_now" in model_admin.get_actions(request)
            with django_capture_on_commit_callbacks(execute=True):
                model_admin.sync_now(request, Shop.objects.all())
        assert queued == [("shops.tasks.sync_shop", shop.tenant_id, shop.pk, "manual")]
        del other


class TestPagesNotInUpdateOrder:
    """eBay's getOrders pages by offset, newest order first: its pages are not oldest update
    first, so a page's newest update says nothing of the pages still to come."""

    def test_a_pass_failing_on_page_two_of_newest_first_pages_misses_nothing(
        self, tenant_a, monkeypatch
    ):
        shop, store = connect_shop(tenant_a, "ebay")
        connector = connector_for(shop, sleep=lambda _: None, backoff_base=0.01, max_retries=1)
        monkeypatch.setattr(connector, "page_size", 20)
        generated = add_orders(
            store, 50, start=timezone.now() - timedelta(hours=3), step=timedelta(minutes=1)
        )
        fetch = connector.fetch_orders
        calls = {"n": 0}

        def fails_on_page_two(**kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise PlatformError("the platform went away", platform=shop.platform)
            return fetch(**kwargs)

        monkeypatch.setattr(connector, "fetch_orders", fails_on_page_two)
        failed = sync(shop, connector)
        assert failed.status == "failed" and failed.created == 20

        monkeypatch.setattr(connector, "fetch_orders", fetch)
        rerun = sync(shop, connector)

        assert rerun.status == "success", rerun.error
        assert stored_ids(shop.tenant) == sorted(order.order_id for order in generated)


def test_an_address_with_a_non_text_country_code_does_not_fail_the_page(tenant_a):
    """Every address field is text to ingest; a JSON number where the country code belongs
    must not roll back the page (and stop the shop's sync on it for good)."""
    shop, store = connect_shop(tenant_a, "shopify")
    connector = connector_for(shop, sleep=lambda _: None, backoff_base=0.01, max_retries=1)
    first, odd, last = add_orders(store, 3, start=timezone.now() - timedelta(hours=1))
    row = SandboxOrder.objects.get(pk=odd.pk)
    row.payload["shipping_address"]["country_code"] = 840
    row.save()

    run = sync(shop, connector)

    assert run.status == "success", run.error
    assert stored_ids(shop.tenant) == sorted([first.order_id, odd.order_id, last.order_id])
    with tenant_context(shop.tenant):
        order = Order.objects.get(platform_order_id=odd.order_id)
    # Not a two-letter code: left blank for review to flag, the original kept.
    assert order.country == "" and order.original_address["country_code"] == 840
