"""The order list's search box: capped (a pasted page of text is cut, with a message) and
answered by trigram indexes (one query per table), still finding what sellers search for."""

import random
import re

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.db import connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from inventory.models import Sku
from logistics.models import Shipment
from orders.admin import OrderAdmin
from orders.models import ORDER_SEARCH_FIELDS, Order, OrderLine
from tests.factories import (
    CarrierServiceFactory,
    OrderFactory,
    OrderLineFactory,
    ShipmentFactory,
    SkuFactory,
    WarehouseFactory,
)
from tests.orders.admin_helpers import admin_url, changelist_pks
from tkerp.search import MAX_SEARCH_LENGTH, MAX_SEARCH_TERMS, search_capped, search_filter
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


def likes(sql: str) -> int:
    return len(re.findall(r"\bLIKE\b", sql))


@pytest.fixture
def findable(tenant_a, shop_a):
    order = OrderFactory(
        tenant=tenant_a,
        shop=shop_a,
        platform_order_id="576612345678",
        buyer_name="Zuzanna Kowalczyk",
        buyer_email="zuzanna.k@mail.example",
        recipient_name="Piotr Nowak",
    )
    OrderLineFactory(order=order, seller_sku="MUG-BLUE-12")
    ShipmentFactory(order=order, tracking_number="1Z999AA10123456784")
    return order


class TestTheCap:
    def test_a_six_thousand_word_search_is_cut_and_still_answers(
        self, client_a, findable, django_assert_max_num_queries
    ):
        words = ["zuzanna", "576612"] + ["kowalczyk"] * 5_998
        url = admin_url(Order, "changelist") + "?q=" + "+".join(words)

        with CaptureQueriesContext(connection) as queries:
            response = client_a.get(url)

        assert response.status_code == 200
        assert {obj.pk for obj in response.context["cl"].result_list} == {findable.pk}
        (message,) = [str(m) for m in get_messages(response.wsgi_request)]
        assert f"first {MAX_SEARCH_TERMS} of 6,000 words" in message
        assert message in response.content.decode()
        # Every query carries at most the capped words, one LIKE per word and search field.
        per_word = len(ORDER_SEARCH_FIELDS)
        assert max(likes(query["sql"]) for query in queries) <= MAX_SEARCH_TERMS * per_word
        assert len(queries) <= 40

    def test_the_length_is_capped_too(self):
        capped = search_capped("x" * 5_000)
        assert capped.cut and capped.terms == ("x" * MAX_SEARCH_LENGTH,)

    @pytest.mark.parametrize(
        ("text", "kept", "cut"),
        [
            (" ".join(["w"] * MAX_SEARCH_TERMS), MAX_SEARCH_TERMS, False),
            (" ".join(["w"] * (MAX_SEARCH_TERMS - 1)) + ' "two words"', MAX_SEARCH_TERMS, False),
            (" ".join(["w"] * (MAX_SEARCH_TERMS + 1)), MAX_SEARCH_TERMS, True),
            ("   ", 0, False),
        ],
    )
    def test_a_quoted_phrase_is_one_word_of_the_cap(self, text, kept, cut):
        capped = search_capped(text)
        assert (len(capped.terms), capped.cut) == (kept, cut)

    def test_a_short_search_is_untouched_and_quoted_phrases_stay_whole(self, client_a, findable):
        capped = search_capped('"zuzanna kowalczyk" MUG-BLUE')
        assert capped == search_capped(capped.text)
        assert capped.terms == ("zuzanna kowalczyk", "MUG-BLUE") and not capped.cut
        response = client_a.get(admin_url(Order, "changelist") + '?q="zuzanna+kowalczyk"')
        assert [str(m) for m in get_messages(response.wsgi_request)] == []
        assert {obj.pk for obj in response.context["cl"].result_list} == {findable.pk}

    def test_every_tenant_list_is_capped(self, client_a, tenant_a):
        SkuFactory(tenant=tenant_a, code="MUG-01", name="Mug")
        words = "+".join(["mug"] * 3_000)
        with CaptureQueriesContext(connection) as queries:
            response = client_a.get(admin_url(Sku, "changelist") + "?q=" + words)
        assert response.status_code == 200
        assert len(response.context["cl"].result_list) == 1
        assert "too long" in response.content.decode()
        assert max(likes(query["sql"]) for query in queries) <= MAX_SEARCH_TERMS * 3


class TestWhatItFinds:
    @pytest.mark.parametrize(
        "query",
        [
            "576612345678",  # the platform's order id
            "6123456",  # part of it
            "zuzanna",  # buyer name, any case
            "KOWALCZYK",
            "zuzanna.k@mail.example",  # buyer email
            "piotr nowak",  # recipient: both words must match
            "1Z999AA10123456784",  # a parcel's tracking number
            "mug-blue",  # a line's seller SKU
            '"Zuzanna Kowalczyk" mug',  # a phrase and a word
        ],
    )
    def test_an_order_is_found_by(self, client_a, findable, query):
        assert changelist_pks(client_a, Order, "?q=" + query.replace(" ", "+")) == {findable.pk}

    def test_every_word_must_match_and_no_order_is_listed_twice(self, client_a, findable):
        OrderLineFactory(order=findable, seller_sku="MUG-BLUE-13")  # two lines match "mug"
        response = client_a.get(admin_url(Order, "changelist") + "?q=mug")
        assert [obj.pk for obj in response.context["cl"].result_list] == [findable.pk]
        assert changelist_pks(client_a, Order, "?q=zuzanna+nobody") == set()

    def test_another_tenants_order_is_never_found(self, client_b, findable):
        assert changelist_pks(client_b, Order, "?q=zuzanna") == set()
        assert changelist_pks(client_b, Order, "?q=1Z999AA10123456784") == set()

    def test_shipments_are_found_by_tracking_number_and_order_id(self, client_a, findable):
        (shipment,) = Shipment._base_manager.filter(order=findable)
        assert changelist_pks(client_a, Shipment, "?q=10123456784") == {shipment.pk}
        assert changelist_pks(client_a, Shipment, "?q=576612345678") == {shipment.pk}
        assert changelist_pks(client_a, Shipment, "?q=" + shipment.reference) == {shipment.pk}


FIRST = ["Jamie", "Alex", "Sam", "Taylor", "Jordan", "Casey", "Riley", "Morgan", "Avery", "Quinn"]
LAST = ["Smith", "Garcia", "Nguyen", "Brown", "Lee", "Patel", "Kim", "Lopez", "Chen", "Davis"]


def many_orders(tenant, shop, count: int) -> None:
    """`count` orders, each with a line and a parcel, written in bulk (a few thousand rows)."""
    rng = random.Random(9)
    warehouse = WarehouseFactory(tenant=tenant)
    service = CarrierServiceFactory(tenant=tenant)
    orders = Order._base_manager.bulk_create(
        Order(
            tenant=tenant,
            shop=shop,
            platform_order_id=f"5766{number:012d}",
            buyer_name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            buyer_email=f"buyer{number}@mail.example",
            recipient_name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            recipient_phone=f"+1415555{number:04d}",
            postal_code=f"{rng.randint(10000, 99999)}",
        )
        for number in range(count)
    )
    OrderLine._base_manager.bulk_create(
        OrderLine(
            tenant=tenant,
            order=order,
            platform_line_id=f"line-{order.pk}",
            seller_sku=f"SKU-{rng.randint(0, 400):04d}",
        )
        for order in orders
    )
    Shipment._base_manager.bulk_create(
        Shipment(
            tenant=tenant,
            order=order,
            reference=f"SHP-{order.pk:08d}",
            warehouse=warehouse,
            service=service,
            tracking_number=f"1Z{rng.randint(0, 10**16):016d}",
        )
        for order in orders
    )
    with connection.cursor() as cursor:
        # Rows just written sit in each GIN index's pending list until autovacuum merges them
        # (VACUUM cannot run in the test's transaction): merge them, and gather statistics.
        # Both are the owner's maintenance: the login role for this transaction, then the
        # application role (row-level security) again.
        cursor.execute("SET LOCAL ROLE NONE")
        cursor.execute(
            "SELECT gin_clean_pending_list(oid) FROM pg_class "
            "WHERE relkind = 'i' AND relname LIKE '%\\_trgm'"
        )
        cursor.execute("ANALYZE orders_order, orders_orderline, logistics_shipment")
        cursor.execute(
            connection.ops.compose_sql("SET LOCAL ROLE %s", [settings.TKERP_DB_APP_ROLE])
        )


def test_every_order_search_word_is_answered_by_its_trigram_indexes_under_the_policies(
    tenant_a, shop_a, tenant_b, shop_b
):
    """Search looks each word up through the search functions (tkerp.search), and every one of
    them must use its trigram index under the application role: a plain `UPPER(column) LIKE`
    cannot there (the policies come first), and a large tenant's search would scan all its rows.

    Whether the planner prefers an index over a scan of a few thousand test rows depends on the
    PostgreSQL version's costs (15 and 18 differ here), so sequential scans are priced out: each
    index is then scanned exactly when the search can use it. The scans are counted in this
    transaction's statistics (`pg_stat_get_xact_numscans`).
    """
    many_orders(tenant_a, shop_a, 2_000)
    many_orders(tenant_b, shop_b, 200)
    indexes = [
        *(f"order_{field}_trgm" for field in ORDER_SEARCH_FIELDS if "__" not in field),
        "orderline_seller_sku_trgm",
        "shipment_tracking_number_trgm",
    ]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT current_user")
        assert cursor.fetchone()[0] == settings.TKERP_DB_APP_ROLE  # under the policies
        cursor.execute("SET LOCAL enable_seqscan = off")

        def scans() -> dict[str, int]:
            cursor.execute(
                "SELECT relname, pg_stat_get_xact_numscans(oid) FROM pg_class "
                "WHERE relname = ANY(%s)",
                [indexes],
            )
            return dict(cursor.fetchall())

        before = scans()
        with tenant_context(tenant_a):
            smiths = set(
                search_filter(
                    queryset=Order.objects.all(), fields=OrderAdmin.search_fields, terms=["smith"]
                ).values_list("pk", flat=True)
            )
        after = scans()
    assert {index: after[index] - before[index] for index in indexes} == {
        index: 1 for index in indexes
    }
    # What the indexes found is what a scan of tenant A's own rows finds.
    with tenant_context(tenant_a):
        expected = set(
            Order.objects.filter(
                Q(buyer_name__icontains="smith") | Q(recipient_name__icontains="smith")
            ).values_list("pk", flat=True)
        )
    assert smiths == expected and expected
