"""The cancellation inbox: requests synced from the TikTok and Shopify sandboxes over real HTTP,
answered through the connectors, recorded, and what an approval does to the order."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inventory.models import MovementKind, Sku, StockLevel
from inventory.stock import stock_adjust
from logistics.models import Shipment, ShipmentStatus
from orders.cancellations import (
    CancellationError,
    cancel_reject_reasons,
    cancellation_approve,
    cancellation_reject,
    cancellations_sweep,
    order_can_ship,
)
from orders.models import (
    CancellationRequest,
    CancellationStatus,
    Order,
    OrderStatus,
    ReturnRequest,
)
from sandbox.base import sandbox_for
from sandbox.models import SandboxCancellation, SandboxOrder
from shops.platforms.tiktok import DEFAULT_REJECT_REASON
from shops.sync import shop_sync
from tests.e2e.helpers import (
    add_orders,
    connect_shop,
    django_q_sync,
)
from tests.factories import (
    CancellationRequestFactory,
    OrderFactory,
    ProviderFactory,
    ReturnRequestFactory,
    ShipmentFactory,
    ShopFactory,
    TenantOrderPolicyFactory,
    WarehouseFactory,
)
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks, run_action
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

PLATFORMS = ["tiktok", "shopify"]


def sync(shop):
    with tenant_context(shop.tenant):
        run = shop_sync(shop=shop)
    assert run.status == "success", run.error
    return run


def requested(tenant, platform, *, count=1, **shop_fields):
    """A connected shop whose first `count` orders the buyers asked to cancel, synced:
    (shop, store, [CancellationRequest])."""
    if not TenantOrderPolicyFactory._meta.model._base_manager.filter(tenant=tenant).exists():
        TenantOrderPolicyFactory(tenant=tenant, cancel_auto_approve=False)
    shop, store = connect_shop(tenant, platform, **shop_fields)
    generated = add_orders(store, count, start=timezone.now() - timedelta(minutes=30))
    sync(shop)
    for order in generated:
        sandbox_for(platform).request_cancellation(
            store=store, order=SandboxOrder.objects.get(pk=order.pk)
        )
    sync(shop)
    with tenant_context(tenant):
        rows = list(
            CancellationRequest.objects.filter(shop=shop)
            .select_related("order", "shop")
            .order_by("pk")
        )
    assert len(rows) == count
    return shop, store, rows


def sandbox_answers(store) -> dict[str, tuple[str, str]]:
    """What the platform recorded: order id -> (decision, reject reason)."""
    return {
        row.order_id: (row.decision, row.reject_reason)
        for row in SandboxCancellation.objects.filter(store=store)
    }


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_synced_request_lands_in_the_inbox_with_its_clock(tenant_a, platform):
    shop, store, [request] = requested(tenant_a, platform)

    assert request.status == CancellationStatus.PENDING
    assert request.order is not None and request.order.cancel_answer_by is not None
    assert request.answer_by is not None and request.answer_by > timezone.now()
    sandbox_row = SandboxCancellation.objects.get(store=store)
    assert request.platform_cancel_id == sandbox_row.cancel_id
    assert not order_can_ship(request.order)  # answer first

    sync(shop)  # again: nothing duplicated
    with tenant_context(tenant_a):
        assert CancellationRequest.objects.count() == 1


@pytest.mark.parametrize("platform", PLATFORMS)
def test_approving_answers_the_platform_and_closes_the_order(tenant_a, user_a, platform):
    _shop, store, [request] = requested(tenant_a, platform)

    with tenant_context(tenant_a):
        answered = cancellation_approve(request=request, user=user_a)
        order = Order.objects.get(pk=request.order_id)
        events = set(order.events.values_list("kind", flat=True))

    assert answered.status == CancellationStatus.APPROVED
    assert answered.answered_by == user_a and answered.answered_at is not None
    assert sandbox_answers(store)[order.platform_order_id][0] == "approve"
    shown = sandbox_for(platform).show(store=store, what="cancellations")
    assert len(shown) == 1
    assert order.status == OrderStatus.CANCELLED and order.cancelled_at is not None
    assert {"cancel_approved", "cancelled"} <= events
    assert not order_can_ship(order)

    # Answering again does not ask the platform: make every platform call fail, then retry.
    store.fault_rate, store.fault_kinds = 1.0, ["badsign"]
    store.save(update_fields=["fault_rate", "fault_kinds"])
    with tenant_context(tenant_a):
        again = cancellation_approve(request=answered, user=user_a)
    assert again.status == CancellationStatus.APPROVED and again.error == ""


def test_rejecting_on_tiktok_sends_the_reason_code(tenant_a, user_a):
    shop, store, [request] = requested(tenant_a, "tiktok")
    assert DEFAULT_REJECT_REASON in dict(cancel_reject_reasons("tiktok"))

    with tenant_context(tenant_a):
        answered = cancellation_reject(
            request=request, user=user_a, reason=DEFAULT_REJECT_REASON, comment="packed at 9am"
        )
        order = Order.objects.get(pk=request.order_id)

    assert answered.status == CancellationStatus.REJECTED
    assert (answered.reject_reason, answered.comment) == (DEFAULT_REJECT_REASON, "packed at 9am")
    assert sandbox_answers(store)[order.platform_order_id] == ("reject", DEFAULT_REJECT_REASON)
    assert order.status != OrderStatus.CANCELLED
    assert order_can_ship(order)

    sync(shop)  # the platform's rejected status does not reopen it
    with tenant_context(tenant_a):
        assert CancellationRequest.objects.get().status == CancellationStatus.REJECTED


def test_rejecting_on_shopify_is_recorded_here_only(tenant_a, user_a):
    _shop, store, [request] = requested(tenant_a, "shopify")
    with tenant_context(tenant_a):
        answered = cancellation_reject(request=request, user=user_a, reason="already_packed")
    assert answered.status == CancellationStatus.REJECTED
    # Shopify has nothing to reject: the platform's record is untouched.
    assert sandbox_answers(store)[request.platform_order_id] == ("", "")


def test_a_reason_the_platform_does_not_know_is_refused(tenant_a, user_a):
    _shop, _store, [request] = requested(tenant_a, "tiktok")
    with tenant_context(tenant_a), pytest.raises(CancellationError, match="not a reject reason"):
        cancellation_reject(request=request, user=user_a, reason="because")
    with tenant_context(tenant_a):
        assert CancellationRequest.objects.get().status == CancellationStatus.PENDING


def test_a_platform_error_leaves_the_request_pending_with_the_error(tenant_a, user_a):
    _shop, store, [request] = requested(tenant_a, "tiktok")
    # Someone answered in TikTok's seller centre already: TikTok refuses a different answer.
    SandboxCancellation.objects.filter(store=store).update(decision="reject")

    with tenant_context(tenant_a), pytest.raises(CancellationError, match="no longer"):
        cancellation_approve(request=request, user=user_a)

    with tenant_context(tenant_a):
        row = CancellationRequest.objects.get()
        order = Order.objects.get(pk=request.order_id)
    assert row.status == CancellationStatus.PENDING and row.decision == ""
    assert "can no longer be answered" in row.error
    assert order.status != OrderStatus.CANCELLED


def test_bulk_approve_from_the_admin(tenant_a, client_a):
    _shop, store, rows = requested(tenant_a, "tiktok", count=2)

    response = run_action(client_a, CancellationRequest, "approve_requests", [r.pk for r in rows])

    assert response.status_code == 302
    with tenant_context(tenant_a):
        assert set(CancellationRequest.objects.values_list("status", flat=True)) == {"approved"}
        assert set(Order.objects.values_list("status", flat=True)) == {"cancelled"}
    assert {decision for decision, _ in sandbox_answers(store).values()} == {"approve"}


def test_bulk_reject_from_the_admin_asks_for_a_reason(tenant_a, client_a):
    _shop, store, rows = requested(tenant_a, "tiktok", count=2)
    pks = [r.pk for r in rows]

    page = run_action(client_a, CancellationRequest, "reject_requests", pks)
    assert page.status_code == 200
    assert DEFAULT_REJECT_REASON in page.content.decode()

    done = run_action(
        client_a,
        CancellationRequest,
        "reject_requests",
        pks,
        apply="1",
        reason=DEFAULT_REJECT_REASON,
        comment="",
    )
    assert done.status_code == 302
    assert set(sandbox_answers(store).values()) == {("reject", DEFAULT_REJECT_REASON)}


def test_bulk_reject_across_platforms_with_different_reasons_sends_nothing(tenant_a, client_a):
    _shop, tiktok, [on_tiktok] = requested(tenant_a, "tiktok")
    _shop, shopify, [on_shopify] = requested(tenant_a, "shopify")

    response = run_action(
        client_a, CancellationRequest, "reject_requests", [on_tiktok.pk, on_shopify.pk]
    )

    assert response.status_code == 302
    shown = [str(m) for m in response.wsgi_request._messages]
    assert any("platforms with different reject reasons" in m for m in shown), shown
    with tenant_context(tenant_a):
        assert set(CancellationRequest.objects.values_list("status", flat=True)) == {"pending"}
    answers = [*sandbox_answers(tiktok).values(), *sandbox_answers(shopify).values()]
    assert {decision for decision, _ in answers} <= {""}


class TestPolicy:
    def test_the_sweep_auto_approves_requests_for_untouched_orders(self, tenant_a):
        _shop, store, [request] = requested(tenant_a, "tiktok")
        TenantOrderPolicyFactory._meta.model._base_manager.filter(tenant=tenant_a).update(
            cancel_auto_approve=True
        )

        result = cancellations_sweep(tenant=tenant_a)

        assert result["auto_approved"] == 1
        with tenant_context(tenant_a):
            row = CancellationRequest.objects.get()
        assert row.status == CancellationStatus.APPROVED and row.auto_approved
        assert row.answered_by is None
        assert sandbox_answers(store)[request.platform_order_id][0] == "approve"

    def test_a_labelled_order_waits_for_a_person(self, tenant_a):
        _shop, _store, [request] = requested(tenant_a, "tiktok")
        TenantOrderPolicyFactory._meta.model._base_manager.filter(tenant=tenant_a).update(
            cancel_auto_approve=True
        )
        ShipmentFactory(tenant=tenant_a, order=request.order, status=ShipmentStatus.LABELLED)

        assert cancellations_sweep(tenant=tenant_a)["auto_approved"] == 0
        with tenant_context(tenant_a):
            assert CancellationRequest.objects.get().status == CancellationStatus.PENDING

    def test_the_policy_can_be_switched_off(self, tenant_a):
        _shop, _store, [_request] = requested(tenant_a, "tiktok")  # policy off
        assert cancellations_sweep(tenant=tenant_a)["auto_approved"] == 0


class TestClosingTheOrder:
    """Requests on a shop whose platform has no answer API: everything happens here."""

    @pytest.fixture
    def order(self, tenant_a):
        shop = ShopFactory(tenant=tenant_a, platform="manual", platform_shop_id="")
        return OrderFactory(tenant=tenant_a, shop=shop, status="ready")

    def test_pending_shipments_are_cancelled_and_provider_ones_held(self, order, user_a):
        pending = ShipmentFactory(tenant=order.tenant, order=order, status="pending")
        provider = ProviderFactory(tenant=order.tenant)
        with_provider = ShipmentFactory(
            tenant=order.tenant, order=order, status="sent_to_provider", provider=provider
        )
        request = CancellationRequestFactory(tenant=order.tenant, order=order)

        with tenant_context(order.tenant):
            cancellation_approve(request=request, user=user_a)
            statuses = dict(Shipment.objects.values_list("pk", "status"))
            intercepts = dict(Shipment.objects.values_list("pk", "intercept_state"))
            events = list(order.events.values_list("kind", flat=True))

        assert statuses == {pending.pk: "cancelled", with_provider.pk: "sent_to_provider"}
        assert intercepts == {pending.pk: "", with_provider.pk: "requested"}
        assert "shipment.intercept_requested" in events

    def test_an_order_already_on_its_way_is_refused(self, order, user_a):
        ShipmentFactory(tenant=order.tenant, order=order, status="shipped")
        request = CancellationRequestFactory(tenant=order.tenant, order=order)
        with tenant_context(order.tenant), pytest.raises(CancellationError, match="on its way"):
            cancellation_approve(request=request, user=user_a)
        with tenant_context(order.tenant):
            assert CancellationRequest.objects.get().status == CancellationStatus.PENDING

    def test_an_order_with_no_request_can_ship(self, order):
        assert order_can_ship(order)


def test_approval_releases_reserved_stock(tenant_a, user_a):
    TenantOrderPolicyFactory(tenant=tenant_a, cancel_auto_approve=False)
    shop, store = connect_shop(tenant_a, "tiktok")
    warehouse = WarehouseFactory(tenant=tenant_a)
    with tenant_context(tenant_a):
        for sku in Sku.objects.all():
            stock_adjust(
                sku=sku,
                warehouse=warehouse,
                delta=50,
                kind=MovementKind.RECEIVE,
                user=None,
                note="test",
            )
    (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=30))
    sync(shop)
    with tenant_context(tenant_a):
        reserved_before = sum(StockLevel.objects.values_list("reserved", flat=True))
    assert reserved_before > 0
    sandbox_for("tiktok").request_cancellation(
        store=store, order=SandboxOrder.objects.get(pk=generated.pk)
    )
    sync(shop)

    with tenant_context(tenant_a):
        cancellation_approve(request=CancellationRequest.objects.get(), user=user_a)
        assert sum(StockLevel.objects.values_list("reserved", flat=True)) == 0


class TestAdmin:
    def test_the_inbox_is_ordered_by_deadline_and_scoped(self, tenant_a, client_a, client_b):
        later = CancellationRequestFactory(
            tenant=tenant_a, answer_by=timezone.now() + timedelta(hours=40)
        )
        sooner = CancellationRequestFactory(
            tenant=tenant_a, answer_by=timezone.now() + timedelta(hours=2)
        )
        response = client_a.get(admin_url(CancellationRequest, "changelist"))
        assert [row.pk for row in response.context["cl"].result_list] == [sooner.pk, later.pk]
        assert " left</span>" in response.content.decode()
        assert changelist_pks(client_b, CancellationRequest) == set()
        assert_not_found(client_b, admin_url(CancellationRequest, "change", sooner.pk))

    def test_another_tenants_request_cannot_be_answered_from_the_admin(self, tenant_a, client_b):
        shop = ShopFactory(tenant=tenant_a, platform="manual", platform_shop_id="")
        request = CancellationRequestFactory(
            tenant=tenant_a, order=OrderFactory(tenant=tenant_a, shop=shop)
        )
        run_action(client_b, CancellationRequest, "approve_requests", [request.pk])
        assert (
            CancellationRequest._base_manager.get(pk=request.pk).status
            == CancellationStatus.PENDING
        )


class TestWebhook:
    @pytest.fixture
    def notified(self, tenant_a, django_capture_on_commit_callbacks):
        """A TikTok order whose buyer asked to cancel, told to us only by the sandbox's
        webhooks (no sync has run since): (shop, store, order id, sandbox cancel id)."""
        TenantOrderPolicyFactory(tenant=tenant_a, cancel_auto_approve=False)
        shop, store = connect_shop(tenant_a, "tiktok")
        (generated,) = add_orders(store, 1, start=timezone.now() - timedelta(minutes=3))
        sandbox = sandbox_for("tiktok")
        cancellation = sandbox.request_cancellation(
            store=store, order=SandboxOrder.objects.get(pk=generated.pk)
        )
        with django_q_sync(), django_capture_on_commit_callbacks(execute=True):
            statuses = sandbox.notify_order_changed(
                store=store, order=SandboxOrder.objects.get(pk=generated.pk)
            )
        assert statuses == [200, 200]
        return shop, store, generated.order_id, cancellation.cancel_id

    def test_the_request_is_in_the_inbox_and_the_answer_finds_its_platform_id(
        self, tenant_a, user_a, notified
    ):
        _shop, store, order_id, cancel_id = notified
        with tenant_context(tenant_a):
            request = CancellationRequest.objects.get()
        # Known by its order until the platform's own id is looked up.
        assert request.platform_cancel_id == order_id and request.order is not None

        with tenant_context(tenant_a):
            answered = cancellation_approve(request=request, user=user_a)

        assert answered.status == CancellationStatus.APPROVED
        assert answered.platform_cancel_id == cancel_id
        assert sandbox_answers(store)[order_id][0] == "approve"

    def test_the_next_sync_gives_it_the_platform_id(self, tenant_a, notified):
        shop, _store, _order_id, cancel_id = notified
        sync(shop)
        with tenant_context(tenant_a):
            assert list(
                CancellationRequest.objects.values_list("platform_cancel_id", flat=True)
            ) == [cancel_id]


def test_the_inbox_changelists_do_not_grow_queries_with_rows(tenant_a, client_a):
    def queries(model) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client_a.get(admin_url(model, "changelist")).status_code == 200
        return len(captured)

    warehouse = WarehouseFactory(tenant=tenant_a)
    CancellationRequestFactory(tenant=tenant_a)
    ReturnRequestFactory(tenant=tenant_a, received_warehouse=warehouse)
    few = queries(CancellationRequest), queries(ReturnRequest)
    for _ in range(8):
        CancellationRequestFactory(tenant=tenant_a)
        ReturnRequestFactory(tenant=tenant_a, received_warehouse=warehouse)
    assert (queries(CancellationRequest), queries(ReturnRequest)) == few
