"""Stock counts and adjustments: stored figures and the movement ledger always agree."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from inventory.models import MovementKind, StockLevel, StockMovement
from inventory.stock import stock_adjust, stock_count, stock_ledger_balance
from tests.factories import SkuFactory, StockLevelFactory, WarehouseFactory
from tkerp.tenancy import TenantNotSet, tenant_context


@pytest.fixture
def sku(tenant_a):
    return SkuFactory(tenant=tenant_a, code="ALPHA-1")


@pytest.fixture
def warehouse(tenant_a):
    return WarehouseFactory(tenant=tenant_a, code="MAIN")


def level_of(sku, warehouse) -> StockLevel:
    return StockLevel._base_manager.get(sku=sku, warehouse=warehouse)


def movements_of(sku, warehouse):
    return StockMovement._base_manager.filter(sku=sku, warehouse=warehouse)


@pytest.mark.django_db
class TestStockCount:
    def test_first_count_creates_the_level_and_one_movement(self, scope_a, sku, warehouse, user_a):
        movement = stock_count(
            sku=sku, warehouse=warehouse, counted=12, user=user_a, reference="sheet 7"
        )

        level = level_of(sku, warehouse)
        assert (level.on_hand, level.reserved) == (12, 0)
        assert movement.kind == MovementKind.COUNT
        assert (movement.on_hand_delta, movement.reserved_delta) == (12, 0)
        assert movement.created_by == user_a
        assert movement.reference == "sheet 7"
        assert movement.tenant_id == scope_a.pk

    def test_count_records_the_difference(self, scope_a, sku, warehouse, user_a):
        stock_count(sku=sku, warehouse=warehouse, counted=12, user=user_a)

        movement = stock_count(sku=sku, warehouse=warehouse, counted=7, user=user_a)

        assert movement.on_hand_delta == -5
        assert level_of(sku, warehouse).on_hand == 7

    def test_counting_the_same_figure_again_changes_nothing(self, scope_a, sku, warehouse, user_a):
        stock_count(sku=sku, warehouse=warehouse, counted=12, user=user_a)

        again = stock_count(sku=sku, warehouse=warehouse, counted=12, user=user_a)

        assert again is None
        assert movements_of(sku, warehouse).count() == 1

    def test_count_below_reserved_is_refused_with_the_reserved_figure(
        self, scope_a, sku, warehouse, user_a
    ):
        StockLevelFactory(tenant=scope_a, sku=sku, warehouse=warehouse, on_hand=10, reserved=5)

        with pytest.raises(ValidationError) as excinfo:
            stock_count(sku=sku, warehouse=warehouse, counted=4, user=user_a)

        message = " ".join(excinfo.value.message_dict["on_hand"])
        assert "5 units are reserved" in message
        assert "can't be 4" in message
        level = level_of(sku, warehouse)
        assert (level.on_hand, level.reserved) == (10, 5)
        assert not movements_of(sku, warehouse).exists()

    def test_count_down_to_exactly_reserved_is_allowed(self, scope_a, sku, warehouse, user_a):
        StockLevelFactory(tenant=scope_a, sku=sku, warehouse=warehouse, on_hand=10, reserved=5)

        stock_count(sku=sku, warehouse=warehouse, counted=5, user=user_a)

        assert level_of(sku, warehouse).free == 0

    def test_negative_count_is_refused(self, scope_a, sku, warehouse, user_a):
        with pytest.raises(ValidationError) as excinfo:
            stock_count(sku=sku, warehouse=warehouse, counted=-1, user=user_a)
        assert "on_hand" in excinfo.value.message_dict
        assert not StockLevel._base_manager.exists()

    def test_sku_and_warehouse_of_different_tenants_are_refused(
        self, scope_all, sku, tenant_b, user_a
    ):
        foreign_warehouse = WarehouseFactory(tenant=tenant_b)
        with pytest.raises(ValueError, match="different tenants"):
            stock_count(sku=sku, warehouse=foreign_warehouse, counted=1, user=user_a)

    def test_needs_a_tenant_in_scope(self, sku, warehouse, user_a):
        with pytest.raises(TenantNotSet):
            stock_count(sku=sku, warehouse=warehouse, counted=1, user=user_a)


@pytest.mark.django_db
class TestStockAdjust:
    def test_receive_adds_stock(self, scope_a, sku, warehouse, user_a):
        movement = stock_adjust(
            sku=sku,
            warehouse=warehouse,
            delta=10,
            kind=MovementKind.RECEIVE,
            user=user_a,
            note="PO 42",
        )
        assert (movement.kind, movement.on_hand_delta, movement.note) == ("receive", 10, "PO 42")
        assert level_of(sku, warehouse).on_hand == 10

    def test_adjust_below_reserved_is_refused(self, scope_a, sku, warehouse, user_a):
        StockLevelFactory(tenant=scope_a, sku=sku, warehouse=warehouse, on_hand=10, reserved=8)
        with pytest.raises(ValidationError, match="8 units are reserved"):
            stock_adjust(
                sku=sku, warehouse=warehouse, delta=-3, kind="adjust", user=user_a, note="broken"
            )
        assert level_of(sku, warehouse).on_hand == 10

    def test_zero_delta_is_a_no_op(self, scope_a, sku, warehouse, user_a):
        assert (
            stock_adjust(sku=sku, warehouse=warehouse, delta=0, kind="adjust", user=user_a, note="")
            is None
        )
        assert not movements_of(sku, warehouse).exists()

    def test_a_receipt_cannot_remove_stock(self, scope_a, sku, warehouse, user_a):
        with pytest.raises(ValidationError):
            stock_adjust(
                sku=sku, warehouse=warehouse, delta=-1, kind="receive", user=user_a, note=""
            )

    @pytest.mark.parametrize("kind", ["reserve", "release", "ship", "count", "transfer"])
    def test_kinds_with_their_own_function_are_refused(self, scope_a, sku, warehouse, kind):
        with pytest.raises(ValueError, match="stock_adjust records"):
            stock_adjust(sku=sku, warehouse=warehouse, delta=1, kind=kind, user=None, note="")


@pytest.mark.django_db
def test_the_ledger_sums_to_the_stored_figures(scope_a, sku, warehouse, user_a):
    stock_adjust(sku=sku, warehouse=warehouse, delta=40, kind="receive", user=user_a, note="")
    stock_count(sku=sku, warehouse=warehouse, counted=37, user=user_a)
    stock_adjust(sku=sku, warehouse=warehouse, delta=-2, kind="adjust", user=user_a, note="dent")
    stock_adjust(sku=sku, warehouse=warehouse, delta=1, kind="return", user=user_a, note="")
    stock_count(sku=sku, warehouse=warehouse, counted=36, user=user_a)  # no-op

    level = level_of(sku, warehouse)
    assert level.on_hand == 36
    assert stock_ledger_balance(sku=sku, warehouse=warehouse) == (level.on_hand, level.reserved)
    assert movements_of(sku, warehouse).count() == 4


@pytest.mark.django_db(transaction=True)
def test_concurrent_receipts_lose_no_update(tenant_a, user_a):
    """Two workers receiving at once, starting with no stock level: every unit is kept."""
    sku = SkuFactory(tenant=tenant_a)
    warehouse = WarehouseFactory(tenant=tenant_a)
    errors = []
    start = threading.Barrier(2)

    def receive():
        try:
            with tenant_context(tenant_a):
                start.wait()
                for _ in range(15):
                    stock_adjust(
                        sku=sku, warehouse=warehouse, delta=1, kind="receive", user=None, note=""
                    )
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=receive) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    level = level_of(sku, warehouse)
    assert level.on_hand == 30
    with tenant_context(tenant_a):
        assert stock_ledger_balance(sku=sku, warehouse=warehouse) == (30, 0)
