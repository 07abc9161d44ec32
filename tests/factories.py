"""factory_boy factories for every domain model.

Factories write through the plain base manager inside `all_tenants()` (test data for several
tenants is cross-tenant plumbing, and the database's row-level security would refuse the rows
otherwise), so building test data needs no tenant scope; child rows take their parent's tenant.
"""

from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone
from factory.django import DjangoModelFactory

from inventory.models import (
    InventoryPush,
    Listing,
    Reservation,
    ShopWarehouse,
    Sku,
    StockLevel,
    StockMovement,
    Supplier,
    SupplierItem,
    Warehouse,
)
from live.models import LivePool, LiveSession, ShopFees
from logistics.models import (
    Carrier,
    CarrierRule,
    CarrierService,
    LabelAccount,
    LabelBatch,
    ParcelEvent,
    Provider,
    ProviderAPIKey,
    ProviderEvent,
    ProviderOrderFile,
    ProviderReminder,
    Shipment,
    ShipmentLine,
    ShippingPolicy,
    TrackingPush,
    TrackingPushAttempt,
)
from orders.models import (
    CancellationRequest,
    Order,
    OrderEvent,
    OrderHold,
    OrderLine,
    OrderTag,
    ReturnRequest,
    ReviewSettings,
    ShopSlaFigures,
    Tag,
    TenantOrderPolicy,
)
from shops.models import (
    Invitation,
    Membership,
    Role,
    Shop,
    ShopCredentials,
    SyncRun,
    Tenant,
    WebhookDelivery,
)
from tkerp.models import Alert, Job
from tkerp.tenancy import all_tenants


class BaseFactory(DjangoModelFactory):
    class Meta:
        abstract = True

    @classmethod
    def _get_manager(cls, model_class):
        return model_class._base_manager

    @classmethod
    def _generate(cls, strategy, params):
        with all_tenants():
            return super()._generate(strategy, params)


class TenantFactory(BaseFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Seller {n}")
    slug = factory.Sequence(lambda n: f"seller-{n}")


class UserFactory(BaseFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    is_staff = True
    password = factory.django.Password("pass-word-123")


class MembershipFactory(BaseFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.OWNER


class ShopFactory(BaseFactory):
    class Meta:
        model = Shop

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Shop {n}")
    platform = "tiktok"
    platform_shop_id = factory.Sequence(lambda n: f"7495{n:08d}")


class ShopCredentialsFactory(BaseFactory):
    class Meta:
        model = ShopCredentials

    shop = factory.SubFactory(ShopFactory)
    tenant = factory.SelfAttribute("shop.tenant")
    app_key = "test-app-key"
    app_secret = "test-app-secret"


class SkuFactory(BaseFactory):
    class Meta:
        model = Sku

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"SKU-{n:04d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    weight_grams = 250
    cost = Decimal("4.50")


class ProviderFactory(BaseFactory):
    class Meta:
        model = Provider

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"PRV{n}")
    name = factory.Sequence(lambda n: f"Provider {n}")
    kind = "3pl"


class WarehouseFactory(BaseFactory):
    class Meta:
        model = Warehouse

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"WH{n}")
    name = factory.Sequence(lambda n: f"Warehouse {n}")


class StockLevelFactory(BaseFactory):
    class Meta:
        model = StockLevel

    tenant = factory.SubFactory(TenantFactory)
    sku = factory.SubFactory(SkuFactory, tenant=factory.SelfAttribute("..tenant"))
    warehouse = factory.SubFactory(WarehouseFactory, tenant=factory.SelfAttribute("..tenant"))
    on_hand = 100
    reserved = 0


class StockMovementFactory(BaseFactory):
    class Meta:
        model = StockMovement

    tenant = factory.SubFactory(TenantFactory)
    sku = factory.SubFactory(SkuFactory, tenant=factory.SelfAttribute("..tenant"))
    warehouse = factory.SubFactory(WarehouseFactory, tenant=factory.SelfAttribute("..tenant"))
    kind = "receive"
    on_hand_delta = 10


class ListingFactory(BaseFactory):
    class Meta:
        model = Listing

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    sku = factory.SubFactory(SkuFactory, tenant=factory.SelfAttribute("..tenant"))
    platform_product_id = factory.Sequence(lambda n: f"1729{n:08d}")
    platform_sku_id = factory.Sequence(lambda n: f"1730{n:08d}")


class SupplierFactory(BaseFactory):
    class Meta:
        model = Supplier

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"SUP{n}")
    name = factory.Sequence(lambda n: f"Supplier {n}")


class SupplierItemFactory(BaseFactory):
    class Meta:
        model = SupplierItem

    tenant = factory.SubFactory(TenantFactory)
    supplier = factory.SubFactory(SupplierFactory, tenant=factory.SelfAttribute("..tenant"))
    sku = factory.SubFactory(SkuFactory, tenant=factory.SelfAttribute("..tenant"))
    supplier_item_code = factory.Sequence(lambda n: f"X-{n}")
    cost = Decimal("3.10")


class OrderFactory(BaseFactory):
    class Meta:
        model = Order

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    platform_order_id = factory.Sequence(lambda n: f"5766{n:012d}")
    buyer_name = "Jamie Buyer"
    recipient_name = "Jamie Buyer"
    recipient_phone = "+14155550123"
    address_line1 = "1 Market St"
    city = "San Francisco"
    state = "CA"
    postal_code = "94105"
    country = "US"
    subtotal = Decimal("19.99")
    total = Decimal("24.98")
    shipping_fee = Decimal("4.99")


class OrderLineFactory(BaseFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    tenant = factory.SelfAttribute("order.tenant")
    platform_line_id = factory.Sequence(lambda n: f"line-{n}")
    sku = factory.SubFactory(SkuFactory, tenant=factory.SelfAttribute("..tenant"))
    seller_sku = factory.SelfAttribute("sku.code")
    quantity = 1
    unit_price = Decimal("19.99")
    total = Decimal("19.99")


class OrderHoldFactory(BaseFactory):
    class Meta:
        model = OrderHold

    order = factory.SubFactory(OrderFactory)
    tenant = factory.SelfAttribute("order.tenant")
    code = "buyer_note"
    message = "The buyer left a message."


class TagFactory(BaseFactory):
    class Meta:
        model = Tag

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"tag{n}")


class OrderTagFactory(BaseFactory):
    class Meta:
        model = OrderTag

    order = factory.SubFactory(OrderFactory)
    tenant = factory.SelfAttribute("order.tenant")
    tag = factory.SubFactory(TagFactory, tenant=factory.SelfAttribute("..tenant"))


class OrderEventFactory(BaseFactory):
    class Meta:
        model = OrderEvent

    order = factory.SubFactory(OrderFactory)
    tenant = factory.SelfAttribute("order.tenant")
    kind = "note"
    message = "Something happened."


class CarrierFactory(BaseFactory):
    class Meta:
        model = Carrier

    tenant = factory.SubFactory(TenantFactory)
    code = factory.Sequence(lambda n: f"car{n}")
    name = factory.Sequence(lambda n: f"Carrier {n}")


class CarrierServiceFactory(BaseFactory):
    class Meta:
        model = CarrierService

    tenant = factory.SubFactory(TenantFactory)
    carrier = factory.SubFactory(CarrierFactory, tenant=factory.SelfAttribute("..tenant"))
    code = factory.Sequence(lambda n: f"svc{n}")
    name = factory.Sequence(lambda n: f"Service {n}")


class CarrierRuleFactory(BaseFactory):
    class Meta:
        model = CarrierRule

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Rule {n}")
    priority = factory.Sequence(lambda n: 10 * (n + 1))
    service = factory.SubFactory(CarrierServiceFactory, tenant=factory.SelfAttribute("..tenant"))


class LabelAccountFactory(BaseFactory):
    class Meta:
        model = LabelAccount

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Label account {n}")
    api_key = factory.Sequence(lambda n: f"EZTK{n:032d}")
    carriers = "usps"


class ShipmentFactory(BaseFactory):
    class Meta:
        model = Shipment

    order = factory.SubFactory(OrderFactory)
    tenant = factory.SelfAttribute("order.tenant")
    reference = factory.Sequence(lambda n: f"SHP-{n:06d}")
    warehouse = factory.SubFactory(WarehouseFactory, tenant=factory.SelfAttribute("..tenant"))
    service = factory.SubFactory(CarrierServiceFactory, tenant=factory.SelfAttribute("..tenant"))


class ShipmentLineFactory(BaseFactory):
    class Meta:
        model = ShipmentLine

    shipment = factory.SubFactory(ShipmentFactory)
    tenant = factory.SelfAttribute("shipment.tenant")
    order_line = factory.SubFactory(
        OrderLineFactory, order=factory.SelfAttribute("..shipment.order")
    )
    quantity = 1


class ShippingPolicyFactory(BaseFactory):
    class Meta:
        model = ShippingPolicy

    tenant = factory.SubFactory(TenantFactory)


class LabelBatchFactory(BaseFactory):
    class Meta:
        model = LabelBatch

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    status = "done"


class ShopWarehouseFactory(BaseFactory):
    class Meta:
        model = ShopWarehouse

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    warehouse = factory.SubFactory(WarehouseFactory, tenant=factory.SelfAttribute("..tenant"))
    priority = factory.Sequence(lambda n: n + 1)


class ReservationFactory(BaseFactory):
    class Meta:
        model = Reservation

    tenant = factory.SubFactory(TenantFactory)
    order = factory.SubFactory(OrderFactory, tenant=factory.SelfAttribute("..tenant"))
    order_line = factory.SubFactory(
        OrderLineFactory,
        tenant=factory.SelfAttribute("..tenant"),
        order=factory.SelfAttribute("..order"),
    )
    stock_level = factory.SubFactory(
        StockLevelFactory,
        tenant=factory.SelfAttribute("..tenant"),
        sku=factory.SelfAttribute("..order_line.sku"),
        reserved=1,
    )
    sku = factory.SelfAttribute("stock_level.sku")
    warehouse = factory.SelfAttribute("stock_level.warehouse")
    quantity = 1


class InventoryPushFactory(BaseFactory):
    class Meta:
        model = InventoryPush

    listing = factory.SubFactory(ListingFactory)
    tenant = factory.SelfAttribute("listing.tenant")
    quantity = 7
    result = "ok"
    latency_ms = 120


class ReviewSettingsFactory(BaseFactory):
    class Meta:
        model = ReviewSettings

    tenant = factory.SubFactory(TenantFactory)


class TenantOrderPolicyFactory(BaseFactory):
    class Meta:
        model = TenantOrderPolicy

    tenant = factory.SubFactory(TenantFactory)
    due_soon_hours = 4
    cancel_auto_approve = True


class ShopSlaFiguresFactory(BaseFactory):
    class Meta:
        model = ShopSlaFigures

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    computed_at = factory.LazyFunction(timezone.now)


class CancellationRequestFactory(BaseFactory):
    class Meta:
        model = CancellationRequest

    tenant = factory.SubFactory(TenantFactory)
    order = factory.SubFactory(OrderFactory, tenant=factory.SelfAttribute("..tenant"))
    shop = factory.SelfAttribute("order.shop")
    platform_order_id = factory.SelfAttribute("order.platform_order_id")
    platform_cancel_id = factory.Sequence(lambda n: f"4035{n:012d}")
    reason = "Buyer changed mind"
    requested_at = factory.LazyFunction(timezone.now)
    answer_by = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=48))


class ReturnRequestFactory(BaseFactory):
    class Meta:
        model = ReturnRequest

    tenant = factory.SubFactory(TenantFactory)
    order = factory.SubFactory(OrderFactory, tenant=factory.SelfAttribute("..tenant"))
    shop = factory.SelfAttribute("order.shop")
    platform_order_id = factory.SelfAttribute("order.platform_order_id")
    platform_return_id = factory.Sequence(lambda n: f"4036{n:012d}")
    return_type = "RETURN_AND_REFUND"
    status = "AWAITING_BUYER_SHIP"
    lines = factory.LazyFunction(lambda: [{"seller_sku": "MUG-01", "quantity": 1}])


class SyncRunFactory(BaseFactory):
    class Meta:
        model = SyncRun

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    status = "success"
    trigger = "schedule"
    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyFunction(timezone.now)
    pages = 1
    created = 3


class WebhookDeliveryFactory(BaseFactory):
    class Meta:
        model = WebhookDelivery

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    platform = "tiktok"
    delivery_id = factory.Sequence(lambda n: f"738006628401{n:07d}")
    topic = "ORDER_STATUS_CHANGE"
    platform_order_ids = factory.Sequence(lambda n: [f"5766{n:012d}"])
    body = "{}"
    received_at = factory.LazyFunction(timezone.now)


class InvitationFactory(BaseFactory):
    class Meta:
        model = Invitation

    tenant = factory.SubFactory(TenantFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.com")
    role = Role.OPERATOR
    token_hash = factory.Sequence(lambda n: f"{n:064x}")
    sent_at = factory.LazyFunction(timezone.now)
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))


class AlertFactory(BaseFactory):
    class Meta:
        model = Alert

    tenant = factory.SubFactory(TenantFactory)
    key = factory.Sequence(lambda n: f"test:{n}")
    kind = "sync_failing"
    title = factory.Sequence(lambda n: f"Something needs a person {n}")
    message = "Details."
    opened_at = factory.LazyFunction(timezone.now)
    last_seen_at = factory.LazyFunction(timezone.now)


class JobFactory(BaseFactory):
    class Meta:
        model = Job

    tenant = factory.SubFactory(TenantFactory)
    kind = "import"
    title = factory.Sequence(lambda n: f"Import of file-{n}.csv")
    status = "succeeded"
    message = "Imported 3 rows: 3 new, 0 changed, 0 unchanged."


class ProviderAPIKeyFactory(BaseFactory):
    """A provider's API key, hashed like a real one (the key itself is not kept)."""

    class Meta:
        model = ProviderAPIKey

    tenant = factory.SubFactory(TenantFactory)
    provider = factory.SubFactory(ProviderFactory, tenant=factory.SelfAttribute("..tenant"))
    name = factory.Sequence(lambda n: f"key {n}")
    scope = "read"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        obj = model_class(*args, **kwargs)
        model_class.objects.assign_key(obj)
        obj.save()
        return obj


class ParcelEventFactory(BaseFactory):
    class Meta:
        model = ParcelEvent

    shipment = factory.SubFactory(ShipmentFactory)
    tenant = factory.SelfAttribute("shipment.tenant")
    provider = factory.SubFactory(ProviderFactory, tenant=factory.SelfAttribute("..tenant"))
    kind = "picked"
    occurred_at = factory.LazyFunction(timezone.now)


class LiveSessionFactory(BaseFactory):
    class Meta:
        model = LiveSession

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    title = factory.Sequence(lambda n: f"Live {n}")
    creator_username = "sunny.live"
    starts_at = factory.LazyFunction(lambda: timezone.now() - timedelta(hours=1))
    ends_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))


class LivePoolFactory(BaseFactory):
    class Meta:
        model = LivePool

    tenant = factory.SubFactory(TenantFactory)
    session = factory.SubFactory(LiveSessionFactory, tenant=factory.SelfAttribute("..tenant"))
    sku = factory.SubFactory(SkuFactory, tenant=factory.SelfAttribute("..tenant"))
    quantity = 20


class ShopFeesFactory(BaseFactory):
    class Meta:
        model = ShopFees

    tenant = factory.SubFactory(TenantFactory)
    shop = factory.SubFactory(ShopFactory, tenant=factory.SelfAttribute("..tenant"))
    referral_percent = Decimal("6")


def _tenant_parcel(tenant) -> Shipment:
    """A parcel of an order of `tenant` (ShipmentFactory(tenant=...) alone would build its
    order in another tenant)."""
    return ShipmentFactory(order=OrderFactory(tenant=tenant))


class ProviderEventFactory(BaseFactory):
    """A provider webhook delivery (outbound), not yet sent."""

    class Meta:
        model = ProviderEvent

    tenant = factory.SubFactory(TenantFactory)
    provider = factory.SubFactory(ProviderFactory, tenant=factory.SelfAttribute("..tenant"))
    event_type = "shipment.created"
    event_id = factory.Sequence(lambda n: f"msg_{n:010d}")
    payload = factory.LazyFunction(lambda: {"type": "shipment.created", "data": {}})


class ProviderReminderFactory(BaseFactory):
    class Meta:
        model = ProviderReminder

    tenant = factory.SubFactory(TenantFactory)
    provider = factory.SubFactory(ProviderFactory, tenant=factory.SelfAttribute("..tenant"))
    shipment = factory.LazyAttribute(lambda o: _tenant_parcel(o.tenant))
    kind = "acknowledge"
    due_at = factory.LazyFunction(timezone.now)


class ProviderOrderFileFactory(BaseFactory):
    class Meta:
        model = ProviderOrderFile

    tenant = factory.SubFactory(TenantFactory)
    provider = factory.SubFactory(ProviderFactory, tenant=factory.SelfAttribute("..tenant"))
    slot_at = factory.LazyFunction(timezone.now)
    trigger = "manual"


class TrackingPushFactory(BaseFactory):
    class Meta:
        model = TrackingPush

    tenant = factory.SubFactory(TenantFactory)
    shipment = factory.LazyAttribute(lambda o: _tenant_parcel(o.tenant))
    shop = factory.SelfAttribute("shipment.order.shop")
    number = "1Z5R89390357567127"
    carrier_code = "ups"


class TrackingPushAttemptFactory(BaseFactory):
    class Meta:
        model = TrackingPushAttempt

    tenant = factory.SubFactory(TenantFactory)
    push = factory.SubFactory(TrackingPushFactory, tenant=factory.SelfAttribute("..tenant"))
    shipment = factory.SelfAttribute("push.shipment")
    shop = factory.SelfAttribute("push.shop")
    platform = "tiktok"
    number = factory.SelfAttribute("push.number")
    call = "ship"
    result = "sent"
