"""The audit trail (tkerp.audit): who changed what, whatever the door, in the change's own
transaction, tenant by tenant, with no secret in it."""

import csv
import io

import pgtrigger
import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.urls import reverse

from inventory.models import StockLevel, StockMovement
from logistics.models import ApiKeyScope, LabelAccount, Provider, ProviderAPIKey
from orders.models import Order, OrderHold, OrderStatus
from shops.models import Membership, Role, ShopCredentials
from tests.factories import (
    LabelAccountFactory,
    MembershipFactory,
    OrderFactory,
    ProviderFactory,
    ShopCredentialsFactory,
    ShopFactory,
    StockLevelFactory,
    UserFactory,
)
from tests.logistics.api_world import USPS_NUMBER, Api, provider_world
from tests.orders.admin_helpers import assert_not_found
from tkerp.audit import audit_event_model
from tkerp.models import AuditEvent
from tkerp.tenancy import TenantOwnedModel, all_tenants, tenant_context

pytestmark = pytest.mark.django_db

AUDITED = [
    Order,
    OrderHold,
    StockLevel,
    StockMovement,
    apps.get_model("logistics", "CarrierRule"),
    apps.get_model("orders", "ReviewSettings"),
    ShopCredentials,
    LabelAccount,
    ProviderAPIKey,
    Provider,
    Membership,
]


def trail(obj, *, label=None) -> list:
    """The object's audit events, oldest first (read across tenants, as the test's judge)."""
    event_model = audit_event_model(type(obj))
    with all_tenants():
        events = event_model.objects.filter(pgh_obj_id=obj.pk).order_by("pgh_id")
        if label:
            events = events.filter(pgh_label=label)
        return list(events)


def history_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[obj.pk])


def export_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_audit_export", args=[obj.pk])


def test_every_named_model_is_audited_and_every_event_table_carries_a_tenant():
    for model in AUDITED:
        event_model = audit_event_model(model)
        assert event_model is not None, model
        assert issubclass(event_model, AuditEvent)
        assert issubclass(event_model, TenantOwnedModel)  # row-level security covers it too
        tenant = event_model._meta.get_field("tenant")
        assert tenant.column == "tenant_id" and not tenant.null, model
    # ...and the catalog agrees: the column exists, NOT NULL, on every audit table.
    tables = [audit_event_model(model)._meta.db_table for model in AUDITED]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'tenant_id' "
            "AND is_nullable = 'NO' AND table_name = ANY(%s)",
            [tables],
        )
        assert {row[0] for row in cursor.fetchall()} == set(tables)


def test_an_admin_edit_records_the_user_and_the_history_page_shows_it(tenant_a, client_a, user_a):
    member = MembershipFactory(
        tenant=tenant_a, user=UserFactory(username="packer"), role=Role.OPERATOR
    )
    opts = Membership._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[member.pk])

    response = client_a.post(url, {"role": Role.VIEWER})

    assert response.status_code == 302, response.content.decode()[:2000]
    update = trail(member, label="update")[-1]
    assert update.role == Role.VIEWER and update.tenant_id == tenant_a.pk
    assert update.pgh_context["actor"] == "user"
    assert update.pgh_context["user_id"] == user_a.pk
    assert update.pgh_context["username"] == "owner-a"
    page = client_a.get(history_url(member))
    assert page.status_code == 200
    html = page.content.decode()
    assert "owner-a" in html and "operator → viewer" in html


def test_an_api_call_records_the_key(tenant_a):
    world = provider_world(tenant_a)
    parcel = world["parcel"]
    prefix = world["key"].split(".")[0]

    response = Api(world["key"]).post(
        f"/api/v1/parcels/{parcel.pk}/ship/", {"tracking_number": USPS_NUMBER, "carrier": "usps"}
    )

    assert response.status_code == 200, response.content
    shipped = [e for e in trail(parcel.order, label="update") if e.status == OrderStatus.SHIPPED]
    assert shipped, "the order's shipping is in its trail"
    context = shipped[-1].pgh_context
    assert context["actor"] == "api_key" and context["api_key"] == prefix
    assert context["provider"] == world["prv"].code
    # The stock left through movements; each names the key too.
    with tenant_context(tenant_a):
        movement = StockMovement.objects.filter(order=parcel.order, kind="ship").first()
    assert trail(movement)[0].pgh_context["api_key"] == prefix


@pytest.mark.django_db(transaction=True)
def test_a_task_records_the_task(tenant_a):
    from django_q.tasks import async_task

    from sandbox.actions import sandbox_spike
    from tests.e2e.helpers import connect_shop

    shop, _store = connect_shop(tenant_a, "tiktok")
    with tenant_context(tenant_a):
        sandbox_spike(shop=shop, orders=3, seed=3, cancel_rate=0, webhooks=False)

    async_task("shops.tasks.sync_shop", tenant_a.pk, shop.pk, "manual", sync=True)

    with tenant_context(tenant_a):
        orders = list(Order.objects.all())
    assert len(orders) == 3
    for order in orders:
        inserted = trail(order, label="insert")[0]
        assert inserted.pgh_context["actor"] == "task"
        assert inserted.pgh_context["task"] == "shops.tasks.sync_shop"
        assert inserted.pgh_context["task_id"]
        # Review ran within the pass: the task is still the actor of what it changed there
        # (in the pass's pipeline process too: tests/shops/test_sync_pipeline_beside.py).
        reviewed = trail(order, label="update")[-1]
        assert reviewed.status == order.status != "new"
        assert reviewed.pgh_context["actor"] == "task"
        assert reviewed.pgh_context["task"] == "shops.tasks.sync_shop"
        assert reviewed.pgh_context["task_id"] == inserted.pgh_context["task_id"]
    # Nothing of the task's context outlives it on this thread.
    with tenant_context(tenant_a):
        Order.objects.filter(pk=orders[0].pk).update(seller_note="after the task")
    assert trail(orders[0], label="update")[-1].pgh_context is None


def test_a_command_records_the_command(tenant_a):
    world = provider_world(tenant_a)
    out = io.StringIO()

    call_command(
        "provider_key", "create", "--provider", str(world["prv"].pk), "--scope", "read", stdout=out
    )

    with tenant_context(tenant_a):
        key = ProviderAPIKey.objects.filter(scope=ApiKeyScope.READ).get()
    inserted = trail(key, label="insert")[0]
    assert inserted.pgh_context["actor"] == "command"
    assert inserted.pgh_context["command"] == "provider_key"
    assert inserted.prefix == key.prefix and inserted.tenant_id == tenant_a.pk


def test_bulk_and_raw_updates_are_audited(tenant_a):
    level = StockLevelFactory(tenant=tenant_a, on_hand=10)
    order = OrderFactory(tenant=tenant_a, status=OrderStatus.NEW)

    with tenant_context(tenant_a):
        Order.objects.filter(pk=order.pk).update(status=OrderStatus.READY)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE inventory_stocklevel SET on_hand = on_hand + 5 WHERE id = %s", [level.pk]
        )

    assert trail(order, label="update")[-1].status == OrderStatus.READY
    raw = trail(level, label="update")[-1]
    assert raw.on_hand == 15 and raw.tenant_id == tenant_a.pk
    assert raw.pgh_context is None  # nobody in scope: the History page says "system"


def test_columns_left_out_change_without_an_event(tenant_a):
    level = StockLevelFactory(tenant=tenant_a, on_hand=10, reserved=0)
    before = len(trail(level))

    with tenant_context(tenant_a):
        StockLevel.objects.filter(pk=level.pk).update(reserved=4)  # every reservation does this

    assert len(trail(level)) == before


def test_every_connection_tells_the_triggers_that_none_is_ignored(tenant_a):
    """A new connection holds an empty `pgtrigger.ignore` (tkerp.db.postgres.base), so every
    audit trigger's ignore check reads it instead of raising and catching an error (a rolled
    back subtransaction) for each row written; and the trail is still written."""
    fresh = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with fresh.cursor() as cursor:
            cursor.execute("SELECT current_setting('pgtrigger.ignore', true)")
            assert cursor.fetchone()[0] == "{}"
    finally:
        fresh.close()
    with connection.cursor() as cursor:  # the test's own connection too
        cursor.execute("SELECT current_setting('pgtrigger.ignore', true)")
        assert cursor.fetchone()[0] == "{}"

    order = OrderFactory(tenant=tenant_a, status=OrderStatus.NEW)
    with tenant_context(tenant_a):
        Order.objects.filter(pk=order.pk).update(status=OrderStatus.READY)
    assert [event.pgh_label for event in trail(order)] == ["insert", "update"]


def test_pgtrigger_ignore_still_silences_the_audit_on_top_of_the_empty_list(tenant_a):
    order = OrderFactory(tenant=tenant_a, status=OrderStatus.NEW)

    with pgtrigger.ignore("orders.Order:audit_update"), tenant_context(tenant_a):
        Order.objects.filter(pk=order.pk).update(status=OrderStatus.READY)
    with tenant_context(tenant_a):
        Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)

    assert [event.status for event in trail(order, label="update")] == [OrderStatus.CANCELLED]


def test_the_audit_row_rolls_back_with_its_change(tenant_a):
    order = OrderFactory(tenant=tenant_a, status=OrderStatus.NEW)
    before = len(trail(order))

    with pytest.raises(RuntimeError), transaction.atomic(), tenant_context(tenant_a):
        Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELLED)
        assert len(trail(order)) == before + 1  # written in the same transaction...
        raise RuntimeError("the change fails")

    assert len(trail(order)) == before  # ...and gone with it
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW


def test_secrets_never_reach_the_trail_but_their_change_does(tenant_a, client_a):
    credentials = ShopCredentialsFactory(
        tenant=tenant_a,
        shop=ShopFactory(tenant=tenant_a),
        app_secret="plain-app-secret-1",
        access_token="plain-token-1",
    )
    account = LabelAccountFactory(tenant=tenant_a, api_key="plain-label-key-1")
    provider = ProviderFactory(tenant=tenant_a, webhook_secret="plain-hook-secret-1")
    with tenant_context(tenant_a):
        provider.webhook_secret = "plain-hook-secret-2"
        provider.save()
        credentials.access_token = "plain-token-2"
        credentials.save()
        account.api_key = "plain-label-key-2"
        account.save()

    assert trail(credentials, label="insert")[0].secrets_changed == ["app_secret", "access_token"]
    assert trail(credentials, label="update")[-1].secrets_changed == ["access_token"]
    assert trail(account, label="update")[-1].secrets_changed == ["api_key"]
    assert trail(provider, label="update")[-1].secrets_changed == ["webhook_secret"]
    # Neither the values nor their ciphertexts are in any audit table.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT app_secret, access_token FROM shops_shopcredentials WHERE id = %s",
            [credentials.pk],
        )
        stored = [value for value in cursor.fetchone() if value]
        cursor.execute("SELECT api_key FROM logistics_labelaccount WHERE id = %s", [account.pk])
        stored += [cursor.fetchone()[0]]
        cursor.execute("SELECT webhook_secret FROM logistics_provider WHERE id = %s", [provider.pk])
        stored += [cursor.fetchone()[0]]
        plain = [
            "plain-app-secret-1",
            "plain-token-1",
            "plain-token-2",
            "plain-label-key-2",
            "plain-hook-secret-1",
            "plain-hook-secret-2",
        ]
        for model in AUDITED:
            table = audit_event_model(model)._meta.db_table
            for needle in [*plain, *stored]:
                cursor.execute(f'SELECT 1 FROM "{table}" t WHERE strpos(t::text, %s) > 0', [needle])
                assert cursor.fetchone() is None, (table, needle[:12])
    # The shop's History page shows its credentials' trail (they are edited on its page).
    html = client_a.get(history_url(credentials.shop)).content.decode()
    assert "shop credentials" in html and "access_token" in html and "plain-token" not in html
    html = client_a.get(history_url(provider)).content.decode()
    assert "webhook_secret" in html and "plain-hook" not in html


def test_the_export_lists_who_changed_what(tenant_a, client_a, user_a):
    member = MembershipFactory(
        tenant=tenant_a, user=UserFactory(username="packer"), role=Role.OPERATOR
    )
    opts = Membership._meta
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[member.pk])
    assert client_a.post(change, {"role": Role.MANAGER}).status_code == 302

    response = client_a.get(export_url(member))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["action"] for row in rows if row["field"] == "role"] == ["insert", "update"]
    update = next(row for row in rows if row["action"] == "update")
    assert (update["who"], update["actor"], update["old"], update["new"]) == (
        "owner-a",
        "user",
        "operator",
        "manager",
    )


def test_another_tenants_history_is_missing_and_its_export_404(tenant_a, tenant_b, client_b):
    order = OrderFactory(tenant=tenant_a)
    credentials = ShopCredentialsFactory(tenant=tenant_a, shop=ShopFactory(tenant=tenant_a))
    provider = ProviderFactory(tenant=tenant_a)
    for obj in (order, credentials.shop, StockLevelFactory(tenant=tenant_a), provider):
        # The page answers as for a missing object (the admin's object pages all do)...
        assert_not_found(client_b, history_url(obj))
        # ...and the download is a 404, the same as for an id that does not exist.
        assert client_b.get(export_url(obj)).status_code == 404
        missing = export_url(obj).replace(f"/{obj.pk}/", "/987654321/")
        assert client_b.get(missing).status_code == 404


def test_the_history_needs_the_view_permission(tenant_a):
    """A manager sees the shop's trail but not its credentials' (owners only)."""
    credentials = ShopCredentialsFactory(tenant=tenant_a, shop=ShopFactory(tenant=tenant_a))
    manager = MembershipFactory(tenant=tenant_a, role=Role.MANAGER).user
    from django.test import Client

    client = Client()
    client.force_login(manager)
    export = client.get(export_url(credentials.shop))
    assert export.status_code == 200  # the shop, yes...
    assert "shop credentials" not in export.content.decode()  # ...its credentials' trail, no
    assert "shop credentials" not in client.get(history_url(credentials.shop)).content.decode()


def test_a_model_without_a_trail_keeps_djangos_history(tenant_a, client_a):
    from tests.factories import TagFactory

    tag = TagFactory(tenant=tenant_a)
    opts = tag._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[tag.pk])
    assert client_a.get(url).status_code == 200
