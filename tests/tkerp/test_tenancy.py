"""The house framework's tenancy guarantees, on PostgreSQL."""

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from inventory.models import Sku, StockLevel
from orders.models import Order
from tests.factories import (
    OrderFactory,
    ShopFactory,
    SkuFactory,
    StockLevelFactory,
    TenantFactory,
)
from tkerp.tenancy import (
    TenantNotSet,
    all_tenants,
    current_tenant,
    require_tenant,
    tenant_context,
)


@pytest.mark.django_db
class TestScopedManager:
    def test_query_without_a_tenant_in_scope_raises(self):
        with pytest.raises(TenantNotSet, match=r"inventory\.Sku queried with no tenant in scope"):
            Sku.objects.all()

    def test_related_manager_without_scope_raises(self):
        order = OrderFactory()
        with pytest.raises(TenantNotSet):
            list(order.lines.all())

    def test_scope_limits_rows_to_the_tenant(self, tenant_a, tenant_b):
        SkuFactory(tenant=tenant_a, code="A-1")
        SkuFactory(tenant=tenant_b, code="B-1")
        with tenant_context(tenant_a):
            assert list(Sku.objects.values_list("code", flat=True)) == ["A-1"]
            assert not Sku.objects.filter(code="B-1").exists()
            with pytest.raises(Sku.DoesNotExist):
                Sku.objects.get(code="B-1")

    def test_escape_hatch_sees_every_tenant(self, tenant_a, tenant_b):
        SkuFactory(tenant=tenant_a, code="A-1")
        SkuFactory(tenant=tenant_b, code="B-1")
        with all_tenants():
            assert set(Sku.objects.values_list("code", flat=True)) == {"A-1", "B-1"}
            assert current_tenant() is None

    def test_scope_is_restored_after_the_block(self, tenant_a):
        with tenant_context(tenant_a):
            assert require_tenant() == tenant_a
        assert current_tenant() is None
        with pytest.raises(TenantNotSet):
            require_tenant()

    def test_save_fills_the_tenant_from_scope(self, tenant_a):
        with tenant_context(tenant_a):
            sku = Sku.objects.create(code="NEW", name="New thing")
        assert sku.tenant == tenant_a

    def test_save_without_scope_or_tenant_raises(self):
        with pytest.raises(TenantNotSet):
            Sku(code="X", name="x").save()

    def test_same_code_is_allowed_in_two_tenants_but_not_twice_in_one(self, tenant_a, tenant_b):
        SkuFactory(tenant=tenant_a, code="SAME")
        SkuFactory(tenant=tenant_b, code="SAME")
        with pytest.raises(IntegrityError), transaction.atomic():
            SkuFactory(tenant=tenant_a, code="SAME")

    def test_clean_refuses_a_link_to_another_tenants_row(self, tenant_a, tenant_b):
        shop_b = ShopFactory(tenant=tenant_b)
        order = OrderFactory.build(tenant=tenant_a, shop=shop_b, platform_order_id="1")
        # The operator's all-tenants view is where such a choice could be offered at all.
        with all_tenants(), pytest.raises(ValidationError) as excinfo:
            order.full_clean()
        assert "shop" in excinfo.value.message_dict


@pytest.mark.django_db
class TestStockConstraint:
    def test_reserved_above_on_hand_is_rejected_by_the_database(self):
        level = StockLevelFactory(on_hand=5, reserved=5)
        with pytest.raises(IntegrityError), transaction.atomic():
            StockLevel._base_manager.filter(pk=level.pk).update(reserved=6)

    def test_negative_reserved_is_rejected_by_the_database(self):
        level = StockLevelFactory(on_hand=5, reserved=0)
        with pytest.raises(IntegrityError), transaction.atomic():
            StockLevel._base_manager.filter(pk=level.pk).update(reserved=-1)

    def test_on_hand_below_reserved_is_rejected(self):
        level = StockLevelFactory(on_hand=5, reserved=3)
        with pytest.raises(IntegrityError), transaction.atomic():
            StockLevel._base_manager.filter(pk=level.pk).update(on_hand=2)

    def test_full_clean_reports_the_constraint_readably(self):
        level = StockLevelFactory.build(
            tenant=TenantFactory(), on_hand=1, reserved=2, sku=None, warehouse=None
        )
        with tenant_context(level.tenant), pytest.raises(ValidationError) as excinfo:
            level.validate_constraints()
        assert "Reserved must be between 0 and on hand." in str(excinfo.value)


@pytest.mark.django_db
def test_order_platform_id_is_unique_per_shop(tenant_a):
    shop = ShopFactory(tenant=tenant_a)
    OrderFactory(tenant=tenant_a, shop=shop, platform_order_id="42")
    OrderFactory(tenant=tenant_a, shop=ShopFactory(tenant=tenant_a), platform_order_id="42")
    with pytest.raises(IntegrityError), transaction.atomic():
        OrderFactory(tenant=tenant_a, shop=shop, platform_order_id="42")
    with tenant_context(tenant_a):
        assert Order.objects.filter(platform_order_id="42").count() == 2
