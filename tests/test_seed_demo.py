"""`manage.py seed_demo`: the demo promised in the README, on PostgreSQL.

Seeding takes a few seconds, so it runs once per module (and is wiped afterwards); every test
runs in its own rolled-back transaction on top of it.
"""

import re
from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import F, ForeignKey, Q, Sum
from django.test import Client, override_settings
from pypdf import PdfReader

from inventory.models import (
    MovementKind,
    Reservation,
    ReservationState,
    Sku,
    StockLevel,
    StockMovement,
    WarehouseKind,
)
from inventory.reservations import order_ship_commit
from logistics.models import Carrier, LabelAccount, Shipment, ShipmentLine, ShipmentStatus
from logistics.tracking_numbers import (
    fedex_check_digit,
    gs1_check_digit,
    make_tracking_number,
    ups_check_digit,
)
from orders.cancellations import (
    SHIPPED_SHIPMENTS,
    cancellation_approve,
    cancellations_auto_approve,
)
from orders.models import (
    OPEN_STATUSES,
    CancellationRequest,
    CancellationStatus,
    Order,
    OrderEvent,
    OrderHold,
    OrderStatus,
)
from sandbox.models import SandboxLabelAccount, SandboxStore
from shops.demo import DEMO_LABEL_LATENCY_MS, DEMO_LOGINS, DEMO_PASSWORD, DEMO_TENANTS
from shops.models import Membership, Platform, Role, Shop, SyncRun, SyncRunStatus, Tenant
from shops.platforms import connector_for
from shops.platforms.base import ShipRequest
from shops.sync import shop_sync
from tkerp.models import AuditEvent
from tkerp.tenancy import TenantOwnedModel, all_tenants, tenant_context

SLUGS = [spec.slug for spec in DEMO_TENANTS]
ORDERS_PER_TENANT = 300

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def demo_output(django_db_setup, django_db_blocker, tmp_path_factory):
    """Seed the demo once for this module; what the command printed. Its label files go to a
    folder of the module's own."""
    from shops.demo import demo_reset

    media = tmp_path_factory.mktemp("demo-media")
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media):
        out = StringIO()
        call_command("seed_demo", stdout=out)
        try:
            yield out.getvalue()
        finally:
            demo_reset()


@pytest.fixture
def demo_tenants(demo_output) -> dict[str, Tenant]:
    return {tenant.slug: tenant for tenant in Tenant.objects.filter(slug__in=SLUGS)}


def tenant_owned_models() -> list:
    return [
        model
        for model in apps.get_models()
        if issubclass(model, TenantOwnedModel) and not model._meta.proxy
    ]


def row_counts() -> dict[str, int]:
    """Rows of every tenant-owned model, plus users: the fingerprint of a seeded database. The
    audit trail is left out: it records every run of the seeding, by design."""
    counts = {
        model._meta.label: model._base_manager.count()
        for model in tenant_owned_models()
        if not issubclass(model, AuditEvent)
    }
    counts["auth.User"] = get_user_model().objects.count()
    counts["shops.Tenant"] = Tenant.objects.count()
    return counts


class TestWhatTheDemoContains:
    def test_the_command_prints_the_admin_url_and_every_login(self, demo_output):
        assert "http://127.0.0.1:8000/admin/" in demo_output
        assert DEMO_PASSWORD in demo_output
        for login in DEMO_LOGINS:
            assert login.username in demo_output

    def test_two_tenants_with_an_owner_each_a_viewer_and_a_member_of_both(self, demo_tenants):
        assert set(demo_tenants) == set(SLUGS)
        assert {t.name for t in demo_tenants.values()} >= {"Sunny Day Beauty", "Peak Outdoor Co."}
        with all_tenants():
            roles = Counter(
                (m.user.username, m.tenant.slug)
                for m in Membership.objects.select_related("user", "tenant")
            )
            by_role = {(m.tenant.slug, m.role) for m in Membership.objects.select_related("tenant")}
        for slug in SLUGS:
            assert (slug, Role.OWNER) in by_role
        assert by_role & {(slug, Role.VIEWER) for slug in SLUGS}
        assert by_role & {(slug, Role.OPERATOR) for slug in SLUGS}
        assert sum(1 for (user, _slug) in roles if user == "alex") == 2
        operator = get_user_model().objects.get(username="operator")
        assert operator.is_superuser and operator.is_staff
        for login in DEMO_LOGINS:
            user = get_user_model().objects.get(username=login.username)
            assert user.is_staff and user.is_active
            assert user.check_password(DEMO_PASSWORD)

    @pytest.mark.parametrize("slug", SLUGS)
    def test_each_tenant_has_shops_catalogue_stock_suppliers_and_carriers(self, demo_tenants, slug):
        tenant = demo_tenants[slug]
        with tenant_context(tenant):
            from inventory.models import Listing, Supplier, SupplierItem, Warehouse
            from logistics.models import Carrier, CarrierRule
            from shops.models import Shop

            platforms = set(Shop.objects.values_list("platform", flat=True))
            assert {Platform.TIKTOK, Platform.SHOPIFY, Platform.MANUAL} <= platforms
            assert platforms & {Platform.AMAZON, Platform.EBAY}

            skus = list(Sku.objects.all())
            assert 15 <= len(skus) <= 30
            for sku in skus:
                assert sku.weight_grams > 0 and sku.cost > 0
                assert re.fullmatch(r"\d{12}", sku.barcode)
                assert gs1_check_digit(sku.barcode[:-1]) == sku.barcode[-1]

            warehouses = {w.kind: w for w in Warehouse.objects.all()}
            assert set(warehouses) == {WarehouseKind.OWN, WarehouseKind.THREE_PL}
            assert warehouses[WarehouseKind.THREE_PL].provider_id is not None
            assert StockLevel.objects.filter(warehouse__kind=WarehouseKind.THREE_PL).exists()
            assert StockLevel.objects.filter(warehouse__kind=WarehouseKind.OWN).count() == len(skus)

            assert Supplier.objects.count() >= 2
            preferred = SupplierItem.objects.filter(is_preferred=True)
            assert set(preferred.values_list("sku_id", flat=True)) == {sku.pk for sku in skus}

            carriers = Carrier.objects.all()
            assert set(carriers.values_list("code", flat=True)) >= {"usps", "ups", "fedex"}
            assert all(carrier.services.exists() for carrier in carriers)
            assert CarrierRule.objects.count() >= 3

            # Every SKU is listed on every shop of the tenant.
            assert Listing.objects.count() == len(skus) * len(platforms)
            assert Order.objects.count() == ORDERS_PER_TENANT

    @pytest.mark.parametrize("slug", SLUGS)
    def test_orders_cover_every_state_of_an_orders_life(self, demo_tenants, slug):
        with tenant_context(demo_tenants[slug]):
            statuses = set(Order.objects.values_list("status", flat=True))
            assert statuses == set(OrderStatus.values)

            active = OrderHold.objects.filter(released_at__isnull=True)
            assert set(active.values_list("code", flat=True)) >= {
                "buyer_note",
                "address.po_box",
                "high_value",
            }
            held = set(active.values_list("order_id", flat=True))
            assert held == set(
                Order.objects.filter(status=OrderStatus.ON_HOLD).values_list("pk", flat=True)
            )
            assert not Order.objects.filter(
                holds__code="buyer_note", holds__released_at__isnull=True, buyer_note=""
            ).exists()
            for order in Order.objects.filter(holds__code="address.po_box"):
                assert order.address_line1.startswith("PO Box")

            shipped = Order.objects.filter(
                status__in=[OrderStatus.SHIPPED, OrderStatus.IN_TRANSIT, OrderStatus.DELIVERED]
            )
            assert shipped.exists()
            assert not shipped.filter(Q(shipped_at__isnull=True) | Q(shipments=None)).exists()
            assert not Shipment.objects.filter(
                order__in=shipped, tracking_number=""
            ).exists()  # fmt: skip
            allocated = Order.objects.filter(status=OrderStatus.ALLOCATED)
            assert allocated.exists()
            assert not allocated.filter(shipments=None).exists()
            assert not Shipment.objects.filter(
                order__in=allocated, shipped_at__isnull=False
            ).exists()
            assert not Order.objects.filter(
                status=OrderStatus.CANCELLED, cancelled_at__isnull=True
            ).exists()
            assert Order.objects.filter(tags__isnull=False).exists()
            # Open cancellation requests wait for an answer, with the event that started it.
            requested = Order.objects.filter(cancel_answer_by__isnull=False)
            assert requested.exists()
            assert not requested.exclude(status__in=OPEN_STATUSES).exists()
            assert (
                OrderEvent.objects.filter(order__in=requested, kind="cancel_requested").count()
                == requested.count()
            )
            assert not Order.objects.filter(events=None).exists()

    def test_order_money_adds_up_and_sla_clocks_follow_the_shop_policy(self, demo_tenants):
        with all_tenants():
            orders = Order.objects.select_related("shop").annotate(line_sum=Sum("lines__total"))
            for order in orders:
                # Every platform reports a subtotal net of line discounts (see the connectors);
                # a platform-funded coupon (TikTok) comes off the subtotal too.
                assert order.subtotal == order.line_sum
                # Amazon shows no item prices before payment (Pending): only the order total.
                if not (order.paid_at is None and order.shop.platform == Platform.AMAZON):
                    assert order.total == order.subtotal + order.shipping_fee + order.tax
                hours = (
                    order.shop.presale_ship_by_hours
                    if order.is_presale
                    else order.shop.ship_by_hours
                )
                # Orders not paid yet count from when they were placed.
                start = order.paid_at or order.placed_at
                assert order.ship_by == start + timedelta(hours=hours), order.platform_order_id
                assert order.tracking_by == start + timedelta(
                    hours=settings.TKERP_TRACKING_UPLOAD_HOURS
                )
                assert order.paid_at is None or order.placed_at <= order.paid_at

    def test_tracking_numbers_have_their_carriers_format_and_check_digit(self, demo_tenants):
        with all_tenants():
            shipments = Shipment.objects.exclude(tracking_number="").select_related(
                "service__carrier"
            )
            carriers = Counter()
            for shipment in shipments:
                carrier = shipment.service.carrier.code
                carriers[carrier] += 1
                assert valid_tracking_number(carrier, shipment.tracking_number), (
                    carrier,
                    shipment.tracking_number,
                )
        assert set(carriers) >= {"usps", "ups"}


class TestSeedingAgain:
    def test_running_twice_creates_nothing_new(self, demo_output):
        before = row_counts()
        out = StringIO()
        call_command("seed_demo", stdout=out)
        assert row_counts() == before
        assert "already there" in out.getvalue()

    def test_reset_rebuilds_the_same_data(self, demo_output, django_capture_on_commit_callbacks):
        with all_tenants():
            before_ids = set(Order.objects.values_list("shop__name", "platform_order_id"))
        before = row_counts()
        # As outside a test: what runs once a tenant commits (stock alerts...) runs here too.
        with django_capture_on_commit_callbacks(execute=True):
            call_command("seed_demo", "--reset", stdout=StringIO())
        with all_tenants():
            after_ids = set(Order.objects.values_list("shop__name", "platform_order_id"))
        assert after_ids == before_ids
        assert row_counts() == before
        # The deleted tenants' audit trail went with them (deleting wrote its last events).
        tenant_ids = set(Tenant.objects.values_list("pk", flat=True))
        for model in tenant_owned_models():
            if issubclass(model, AuditEvent):
                left = set(model._base_manager.values_list("tenant_id", flat=True).distinct())
                assert left <= tenant_ids, model._meta.label


class TestConsistency:
    def test_every_tenant_owned_row_belongs_to_a_demo_tenant(self, demo_tenants):
        demo_ids = {tenant.pk for tenant in demo_tenants.values()}
        for model in tenant_owned_models():
            tenant_ids = set(model._base_manager.values_list("tenant_id", flat=True).distinct())
            assert tenant_ids <= demo_ids, model._meta.label

    def test_links_between_rows_never_cross_tenants(self, demo_tenants):
        for model in tenant_owned_models():
            for field in model._meta.concrete_fields:
                if not isinstance(field, ForeignKey) or field.name == "tenant":
                    continue
                if not issubclass(field.related_model, TenantOwnedModel):
                    continue
                crossing = model._base_manager.filter(**{f"{field.name}__isnull": False}).exclude(
                    **{f"{field.name}__tenant": F("tenant")}
                )
                assert not crossing.exists(), f"{model._meta.label}.{field.name}"

    def test_stock_respects_the_constraint_and_equals_its_ledger(self, demo_tenants):
        with all_tenants():
            levels = list(StockLevel.objects.all())
            ledger = {
                (row["sku_id"], row["warehouse_id"]): row
                for row in StockMovement.objects.values("sku_id", "warehouse_id").annotate(
                    on_hand=Sum("on_hand_delta"), reserved=Sum("reserved_delta")
                )
            }
            receipts = Counter(
                StockMovement.objects.filter(kind=MovementKind.RECEIVE).values_list(
                    "sku_id", "warehouse_id"
                )
            )
            # Open orders' reservations hold exactly what is reserved; shipped ones committed.
            held = Counter()
            for sku_id, warehouse_id, quantity in Reservation.objects.filter(
                state=ReservationState.RESERVED
            ).values_list("sku_id", "warehouse_id", "quantity"):
                held[(sku_id, warehouse_id)] += quantity
            open_ids = set(
                Reservation.objects.filter(state=ReservationState.RESERVED).values_list(
                    "order_id", flat=True
                )
            )
            assert not Order.objects.filter(pk__in=open_ids).exclude(status__in=OPEN_STATUSES)
            shipped_lines = ShipmentLine.objects.filter(shipment__shipped_at__isnull=False)
            committed = Reservation.objects.filter(state=ReservationState.COMMITTED)
            assert shipped_lines.count() == committed.count() > 0
        assert levels
        assert any(level.reserved > 0 for level in levels)
        for level in levels:
            key = (level.sku_id, level.warehouse_id)
            assert 0 <= level.reserved <= level.on_hand
            assert ledger[key]["on_hand"] == level.on_hand
            assert ledger[key]["reserved"] == level.reserved
            assert receipts[key] == 1
            assert held[key] == level.reserved
        assert set(ledger) == {(level.sku_id, level.warehouse_id) for level in levels}

    def test_every_parcel_leaves_a_warehouse_of_its_tenant_with_a_service(self, demo_tenants):
        with all_tenants():
            assert not Shipment.objects.filter(service__isnull=True).exists()
            assert not Shipment.objects.filter(
                status__in=[ShipmentStatus.SHIPPED, ShipmentStatus.DELIVERED],
                shipped_at__isnull=True,
            ).exists()

    def test_parcels_at_a_provider_carry_the_clocks_its_timers_read(self, demo_tenants):
        with all_tenants():
            at_provider = Shipment.objects.filter(
                status__in=[ShipmentStatus.SENT_TO_PROVIDER, ShipmentStatus.CONFIRMED]
            )
            assert at_provider.filter(provider__isnull=False).exists()
            assert not at_provider.filter(dispatched_at__isnull=True).exists()
            confirmed = at_provider.filter(status=ShipmentStatus.CONFIRMED)
            assert confirmed.exists()
            assert not confirmed.filter(acknowledged_at__isnull=True).exists()
            assert not confirmed.filter(acknowledged_at__lt=F("dispatched_at")).exists()

    def test_labelled_and_shipped_parcels_have_their_label_files(self, demo_tenants):
        """Every parcel that left (or is labelled to leave) the seller's own warehouse has a
        real 4x6 label PDF carrying its tracking number; 3PL parcels' labels are the
        provider's."""
        gone = [
            ShipmentStatus.LABELLED,
            ShipmentStatus.SHIPPED,
            ShipmentStatus.IN_TRANSIT,
            ShipmentStatus.DELIVERED,
        ]
        with all_tenants():
            own = Shipment.objects.filter(provider__isnull=True, status__in=gone)
            assert set(own.values_list("status", flat=True)) == set(gone)
            assert not own.filter(label_file="").exists()
            parcels = list(own.order_by("pk"))
        for parcel in parcels:
            assert parcel.label_format == "pdf" and parcel.labelled_at is not None
            with parcel.label_file.open("rb") as handle:
                page = PdfReader(handle).pages[0]
                text = page.extract_text()
            assert (float(page.mediabox.width), float(page.mediabox.height)) == (288, 432)
            assert parcel.tracking_number in re.sub(r"\s", "", text)

    def test_each_tenant_buys_its_labels_at_the_label_sandbox(self, demo_tenants):
        for tenant in demo_tenants.values():
            with tenant_context(tenant):
                account = LabelAccount.objects.get()
                carriers = set(Carrier.objects.values_list("code", flat=True))
            assert account.is_active and account.use_sandbox
            assert set(account.carrier_codes) == carriers
            remote = SandboxLabelAccount.objects.get(api_key=account.api_key)
            assert remote.purchase_latency_ms == DEMO_LABEL_LATENCY_MS
            assert remote.rate_per_second == account.requests_per_second


class TestTheSandboxesKnowTheDemo:
    """Platform orders were created in their shop's sandbox store and imported by the real
    sync, so the platform can answer for every one of them."""

    def test_every_platform_order_is_in_its_sandbox_store_with_the_same_id(self, demo_tenants):
        with all_tenants():
            shops = list(Shop.objects.exclude(platform=Platform.MANUAL).order_by("pk"))
            assert {shop.platform for shop in shops} == {"tiktok", "shopify", "amazon", "ebay"}
            for shop in shops:
                store = SandboxStore.objects.get(
                    platform=shop.platform, shop_key=shop.platform_shop_id
                )
                ours = set(
                    Order.objects.filter(shop=shop).values_list("platform_order_id", flat=True)
                )
                assert ours
                assert ours == set(store.orders.values_list("order_id", flat=True)), shop.name

    def test_orders_arrived_through_the_sync_and_review_held_them(self, demo_tenants):
        with all_tenants():
            platform_orders = Order.objects.exclude(shop__platform=Platform.MANUAL)
            ingested = OrderEvent.objects.filter(kind="ingested", data__source="poll")
            assert set(ingested.values_list("order_id", flat=True)) == set(
                platform_orders.values_list("pk", flat=True)
            )
            assert SyncRun.objects.filter(status=SyncRunStatus.SUCCESS).count() == 6
            # Holds come from review and reservation, except those a person set by hand.
            held = OrderHold.objects.filter(released_at__isnull=True, order__in=platform_orders)
            assert not held.exclude(code="manual").filter(created_by__isnull=False).exists()
            assert set(held.values_list("code", flat=True)) >= {
                "address.po_box",
                "address.military",
                "phone.invalid",
                "buyer_note",
                "high_value",
                "duplicate_address",
                "stock.short",
            }
            # New platform orders are the ones not paid yet.
            assert not platform_orders.filter(status=OrderStatus.NEW, paid_at__isnull=False)

    @pytest.mark.parametrize("platform", ["tiktok", "shopify", "amazon", "ebay"])
    def test_shipped_orders_are_shipped_on_the_platform_with_their_tracking_numbers(
        self, demo_tenants, platform
    ):
        with all_tenants():
            shop = Shop.objects.filter(platform=platform).order_by("pk").first()
            ours = dict(
                Shipment.objects.filter(order__shop=shop, status__in=SHIPPED_SHIPMENTS).values_list(
                    "order__platform_order_id", "tracking_number"
                )
            )
        assert ours
        out = StringIO()
        call_command("sandbox", "show", "--shop", str(shop.pk), "shipments", stdout=out)
        shown = out.getvalue()
        for tracking_number in ours.values():
            assert tracking_number in shown
        store = SandboxStore.objects.get(platform=platform, shop_key=shop.platform_shop_id)
        assert dict(store.shipments.values_list("order_id", "tracking_number")) == ours

    @pytest.mark.parametrize("platform", ["tiktok", "shopify", "ebay"])
    def test_approving_a_demo_cancellation_request_cancels_it_on_the_platform(
        self, demo_tenants, platform
    ):
        with all_tenants():
            request = (
                CancellationRequest.objects.filter(
                    shop__platform=platform, status=CancellationStatus.PENDING
                )
                .select_related("shop", "order", "tenant")
                .order_by("pk")
                .first()
            )
        assert request is not None, f"the demo has no {platform} cancellation request"
        with tenant_context(request.tenant):
            answered = cancellation_approve(request=request, user=None)
            assert answered.status == CancellationStatus.APPROVED, answered.error
            request.order.refresh_from_db()
            assert request.order.status == OrderStatus.CANCELLED
        store = SandboxStore.objects.get(platform=platform, shop_key=request.shop.platform_shop_id)
        payload = store.orders.get(order_id=request.platform_order_id).payload
        cancelled = {
            "tiktok": lambda: payload["status"] == "CANCELLED",
            "shopify": lambda: bool(payload["cancelled_at"]),
            "ebay": lambda: payload["cancelStatus"]["cancelState"] == "CANCELED",
        }[platform]
        assert cancelled()

    def test_the_auto_approve_policy_answers_every_demo_request(self, demo_tenants):
        sunny = demo_tenants["sunny-day-beauty"]
        with tenant_context(sunny):
            pending = CancellationRequest.objects.filter(status=CancellationStatus.PENDING)
            assert set(pending.values_list("shop__platform", flat=True)) == {"tiktok", "shopify"}
            count = pending.count()
            assert cancellations_auto_approve(tenant=sunny) == count
            assert not pending.exists()
            assert not CancellationRequest.objects.exclude(error="").exists()

    def test_a_tenant_answering_by_hand_keeps_its_requests_waiting(self, demo_tenants):
        peak = demo_tenants["peak-outdoor"]
        with tenant_context(peak):
            pending = CancellationRequest.objects.filter(status=CancellationStatus.PENDING)
            count = pending.count()
            assert set(pending.values_list("shop__platform", flat=True)) == {
                "tiktok",
                "shopify",
                "ebay",
            }
            assert cancellations_auto_approve(tenant=peak) == 0
            assert pending.count() == count

    @pytest.mark.parametrize("platform", ["tiktok", "shopify", "amazon", "ebay"])
    def test_shipping_an_allocated_demo_order_goes_through_to_the_platform(
        self, demo_tenants, platform
    ):
        with all_tenants():
            order = (
                Order.objects.filter(shop__platform=platform, status=OrderStatus.ALLOCATED)
                .select_related("shop", "tenant")
                .order_by("pk")
                .first()
            )
        shop = order.shop
        with tenant_context(order.tenant):
            shipment = order.shipments.select_related("service__carrier").first()
            carrier = shipment.service.carrier
            reserved = sum(order.reservations.values_list("quantity", flat=True))
            tracking_number = make_tracking_number(
                carrier=carrier.code, service=shipment.service.code, account="4W7R21", serial=17
            )
            connector = connector_for(shop)
            try:
                connector.ship(
                    request=ShipRequest(
                        platform_order_id=order.platform_order_id,
                        tracking_number=tracking_number,
                        carrier_code=carrier.code,
                        platform_provider_id=carrier.platform_provider_ids.get(platform, ""),
                    )
                )
            finally:
                connector.http.close()
            # The reservation rows the sync made are what shipping commits.
            assert order_ship_commit(order=order) == reserved > 0
        store = SandboxStore.objects.get(platform=platform, shop_key=shop.platform_shop_id)
        assert store.shipments.filter(
            order_id=order.platform_order_id, tracking_number=tracking_number
        ).exists()
        if platform in ("tiktok", "shopify"):
            # The next sync hears from the platform that it shipped.
            shop_sync(shop=shop, trigger="test")
            order.refresh_from_db()
            assert order.status == OrderStatus.SHIPPED


class TestDemoLoginsInTheAdmin:
    """Each demo login gets into the admin and sees its own tenant's orders only."""

    @pytest.mark.parametrize(
        ("username", "expected"),
        [
            ("sunny-owner", ["sunny-day-beauty"]),
            ("sunny-packer", ["sunny-day-beauty"]),
            ("peak-owner", ["peak-outdoor"]),
            ("peak-viewer", ["peak-outdoor"]),
            # A member of both starts in the first tenant by name.
            ("alex", ["peak-outdoor"]),
            ("operator", SLUGS),
        ],
    )
    def test_login_sees_only_its_tenants_orders(self, demo_tenants, username, expected):
        client = login(username)
        expected_ids = {demo_tenants[slug].pk for slug in expected}
        assert_changelist_shows(client, expected_ids)

    def test_a_member_of_both_switches_to_the_other_tenant(self, demo_tenants):
        client = login("alex")
        sunny = demo_tenants["sunny-day-beauty"]
        response = client.post(
            "/admin/switch-tenant/", {"tenant": sunny.pk, "next": "/admin/orders/order/"}
        )
        assert response.status_code == 302
        assert_changelist_shows(client, {sunny.pk})

    def test_another_tenants_order_does_not_exist_for_an_owner(self, demo_tenants):
        client = login("sunny-owner")
        with tenant_context(demo_tenants["peak-outdoor"]):
            other = Order.objects.first()
        response = client.get(f"/admin/orders/order/{other.pk}/change/", follow=True)
        assert response.status_code == 404 or (
            response.redirect_chain and "exist" in response.content.decode()
        )
        assert other.platform_order_id not in response.content.decode()

    def test_a_wrong_password_does_not_get_in(self, demo_tenants):
        client = Client()
        response = client.post(
            "/admin/login/", {"username": "sunny-owner", "password": "wrong", "next": "/admin/"}
        )
        assert response.status_code == 200
        assert client.get("/admin/orders/order/").status_code == 302


def login(username: str) -> Client:
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": DEMO_PASSWORD, "next": "/admin/"},
    )
    assert response.status_code == 302, f"{username} could not log in"
    assert response.url == "/admin/"
    return client


def assert_changelist_shows(client: Client, tenant_ids: set[int]) -> None:
    response = client.get("/admin/orders/order/")
    assert response.status_code == 200
    changelist = response.context["cl"]
    # The queryset was scoped when the request built it; counting it now reads that scope.
    assert (
        set(changelist.root_queryset.values_list("tenant_id", flat=True).distinct()) == tenant_ids
    )
    assert changelist.root_queryset.count() == ORDERS_PER_TENANT * len(tenant_ids)
    assert {order.tenant_id for order in changelist.result_list} <= tenant_ids


def valid_tracking_number(carrier: str, number: str) -> bool:
    """The carriers' published formats, checked independently of how the demo made them."""
    if carrier == "usps":
        if not re.fullmatch(r"9[1-5]\d{20}", number):
            return False
        digits = [int(d) for d in reversed(number[:-1])]
        total = 3 * sum(digits[0::2]) + sum(digits[1::2])
        return (10 - total % 10) % 10 == int(number[-1])
    if carrier == "ups":
        return (
            bool(re.fullmatch(r"1Z[0-9A-Z]{15}\d", number))
            and ups_check_digit(number[2:-1]) == number[-1]
        )
    if carrier == "fedex":
        return (
            bool(re.fullmatch(r"\d{12}", number)) and fedex_check_digit(number[:-1]) == number[-1]
        )
    return False


def test_check_digits_agree_with_published_examples():
    assert gs1_check_digit("03600029145") == "2"  # UPC-A 036000291452
    assert ups_check_digit("5R8939035756712") == "7"  # 1Z5R89390357567127
    assert fedex_check_digit("98657878885") == "5"  # 986578788855
