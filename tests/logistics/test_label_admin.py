"""The label back office: label accounts (write-only API key), the parcels' Buy label / Void
label / Compare label rates actions, and the label download, each scoped to the tenant."""

from __future__ import annotations

import pytest
from django.urls import reverse

from logistics.labels.store import shipment_label_buy
from logistics.models import LabelAccount, Shipment, ShipmentStatus
from sandbox.models import SandboxLabelAccount
from tests.inventory.helpers import admin_url, messages_of
from tests.logistics.labels_helpers import label_world, pdf_text, purchases
from tests.orders.admin_helpers import run_action

pytestmark = pytest.mark.usefixtures("label_media")


@pytest.fixture
def world_a(tenant_a):
    return label_world(tenant_a)


@pytest.fixture
def world_b(tenant_b):
    return label_world(tenant_b)


def label_url(shipment) -> str:
    return reverse("admin:logistics_shipment_label", args=[shipment.pk])


@pytest.mark.django_db
class TestLabelAccounts:
    def test_the_api_key_is_never_shown_back(self, client_a, world_a):
        key = world_a.account.api_key
        response = client_a.get(admin_url(LabelAccount, "change", world_a.account.pk))

        assert response.status_code == 200
        content = response.content.decode()
        assert key not in content
        assert f"Set, ending in …{key[-4:]}" in content

        listing = client_a.get(admin_url(LabelAccount, "changelist")).content.decode()
        assert key not in listing and f"…{key[-4:]}" in listing

    def test_a_blank_key_keeps_the_stored_one_and_a_new_one_replaces_it(self, client_a, world_a):
        account = world_a.account
        form = {
            "name": account.name,
            "provider": "easypost",
            "api_key": "",
            "use_sandbox": "on",
            "carriers": "USPS, ups",
            "label_format": "pdf",
            "requests_per_second": "5",
            "is_active": "on",
        }
        response = client_a.post(admin_url(LabelAccount, "change", account.pk), form)
        assert response.status_code == 302, response.context["adminform"].form.errors
        account.refresh_from_db()
        assert account.api_key == world_a.remote.api_key
        assert account.carriers == "usps,ups"

        client_a.post(
            admin_url(LabelAccount, "change", account.pk), {**form, "api_key": "EZAK-new-key"}
        )
        account.refresh_from_db()
        assert account.api_key == "EZAK-new-key"

    def test_carriers_must_be_the_sellers_own(self, client_a, world_a):
        response = client_a.post(
            admin_url(LabelAccount, "add"),
            {
                "name": "Second",
                "provider": "easypost",
                "carriers": "usps,pigeon",
                "label_format": "pdf",
                "requests_per_second": "5",
            },
        )
        assert response.status_code == 200
        assert "No carrier with code pigeon" in response.content.decode()

    def test_another_tenants_account_does_not_exist(self, client_a, world_a, world_b):
        listing = client_a.get(admin_url(LabelAccount, "changelist"))
        shown = {account.pk for account in listing.context["cl"].result_list}
        assert shown == {world_a.account.pk}
        for action in ("change", "delete", "history"):
            theirs = client_a.get(admin_url(LabelAccount, action, world_b.account.pk))
            assert theirs.status_code == 302
            assert any("doesn\u2019t exist" in message for message in messages_of(theirs))


@pytest.mark.django_db
class TestLabelDownload:
    def test_own_label_downloads_and_another_tenants_is_404(self, client_a, world_a, world_b):
        own = shipment_label_buy(shipment=world_a.parcel("usps"))
        theirs = shipment_label_buy(shipment=world_b.parcel("usps"))

        response = client_a.get(label_url(own))
        assert response.status_code == 200
        assert response["Content-Type"] == "application/pdf"
        document = b"".join(response.streaming_content)
        assert own.tracking_number in pdf_text(document).replace(" ", "")

        assert client_a.get(label_url(theirs)).status_code == 404
        assert client_a.get(label_url(world_a.parcel("ups"))).status_code == 404  # no label yet

    def test_the_parcel_list_links_the_label(self, client_a, world_a):
        own = shipment_label_buy(shipment=world_a.parcel("usps"))
        listing = client_a.get(admin_url(Shipment, "changelist")).content.decode()
        assert label_url(own) in listing

    def test_label_fields_are_read_only_on_the_parcel(self, client_a, world_a):
        own = shipment_label_buy(shipment=world_a.parcel("usps"))
        page = client_a.get(admin_url(Shipment, "change", own.pk))
        form_fields = page.context["adminform"].form.fields
        assert "label_file" not in form_fields and "shipping_cost" not in form_fields
        assert "tracking_number" in form_fields


@pytest.mark.django_db
class TestParcelDeletion:
    def test_a_parcel_holding_a_recorded_purchase_is_not_deleted(self, client_a, world_a):
        from orders.models import Order

        parcel, plain = world_a.parcel("usps"), world_a.parcel("usps")
        # As a worker stopped after the label service sold its label leaves it.
        Shipment._base_manager.filter(pk=parcel.pk).update(
            label_request_key="tkerp-key", label_request='{"shipment": {}}'
        )

        client_a.post(admin_url(Shipment, "delete", parcel.pk), {"post": "yes"})
        client_a.post(admin_url(Order, "delete", parcel.order_id), {"post": "yes"})
        client_a.post(
            admin_url(Shipment, "changelist"),
            {"action": "delete_selected", "_selected_action": [parcel.pk], "post": "yes"},
        )
        client_a.post(admin_url(Shipment, "delete", plain.pk), {"post": "yes"})

        assert Shipment._base_manager.filter(pk=parcel.pk).exists()
        assert not Shipment._base_manager.filter(pk=plain.pk).exists()

    def test_a_parcel_holding_a_bought_label_is_not_deleted_until_it_is_refunded(
        self, client_a, world_a
    ):
        from logistics.tasks import resolve_left_labels
        from orders.cancellations import order_cancel_close
        from orders.models import Order
        from tkerp.tenancy import tenant_context

        parcel = shipment_label_buy(shipment=world_a.parcel("usps"))

        def delete_every_way() -> None:
            client_a.post(admin_url(Shipment, "delete", parcel.pk), {"post": "yes"})
            client_a.post(admin_url(Order, "delete", parcel.order_id), {"post": "yes"})
            client_a.post(
                admin_url(Shipment, "changelist"),
                {"action": "delete_selected", "_selected_action": [parcel.pk], "post": "yes"},
            )

        delete_every_way()
        assert Shipment._base_manager.filter(pk=parcel.pk).exists()
        # Cancelled, its label not yet refunded: still kept, or the label would be lost.
        with tenant_context(world_a.tenant):
            order_cancel_close(order=parcel.order, reason="buyer changed their mind")
        delete_every_way()
        assert Shipment._base_manager.filter(pk=parcel.pk).exists()

        assert resolve_left_labels()["labels_refunded"] == 1
        client_a.post(admin_url(Shipment, "delete", parcel.pk), {"post": "yes"})
        assert not Shipment._base_manager.filter(pk=parcel.pk).exists()

    def test_a_cancelled_parcel_whose_label_was_refunded_stays_cancelled(self, client_a, world_a):
        """Set back to labelled by hand, it would print and ship a refunded label."""
        from logistics.tasks import resolve_left_labels
        from orders.cancellations import order_cancel_close
        from tkerp.tenancy import tenant_context

        parcel = shipment_label_buy(shipment=world_a.parcel("usps"))
        with tenant_context(world_a.tenant):
            order_cancel_close(order=parcel.order, reason="buyer changed their mind")
        page = client_a.get(admin_url(Shipment, "change", parcel.pk)).content.decode()
        assert 'name="status"' in page  # not asked about yet: a mistaken cancel can be undone

        assert resolve_left_labels()["labels_refunded"] == 1
        page = client_a.get(admin_url(Shipment, "change", parcel.pk)).content.decode()
        assert 'name="status"' not in page
        assert "Cancelled" in page


@pytest.mark.django_db(transaction=True)
class TestLabelActions:
    def test_buy_then_void_from_the_parcel_list(self, client_a, tenant_a):
        world = label_world(tenant_a)
        good = world.parcel("usps")
        bad = world.parcel("ups", address_line1="Nowhere Lane", reference="BAD-1")

        response = run_action(client_a, Shipment, "buy_labels", [good.pk, bad.pk])

        shown = messages_of(response)
        assert any("Labels ready for 1 parcel(s) (1 bought now)" in m for m in shown), shown
        assert any("BAD-1: the label service could not verify the recipient" in m for m in shown)
        assert Shipment._base_manager.get(pk=good.pk).status == ShipmentStatus.LABELLED
        assert purchases(world) == 1

        response = run_action(client_a, Shipment, "void_labels", [good.pk])
        assert any("Voided 1 label(s)" in m for m in messages_of(response))
        assert Shipment._base_manager.get(pk=good.pk).status == ShipmentStatus.PENDING

    def test_actions_never_reach_another_tenants_parcels(self, client_a, tenant_a, tenant_b):
        label_world(tenant_a)
        world_b = label_world(tenant_b)
        theirs = world_b.parcel("usps")

        run_action(client_a, Shipment, "buy_labels", [theirs.pk])

        assert Shipment._base_manager.get(pk=theirs.pk).status == ShipmentStatus.PENDING
        assert purchases(world_b) == 0


@pytest.mark.django_db
def test_compare_label_rates(client_a, world_a):
    parcel = world_a.parcel("usps", reference="RATES-1")
    response = run_action(client_a, Shipment, "compare_label_rates", [parcel.pk])
    shown = " ".join(messages_of(response))
    assert "RATES-1: " in shown and "USPS GroundAdvantage" in shown and "UPS Ground" in shown
    assert purchases(world_a) == 0


@pytest.mark.django_db
def test_connect_a_label_account_to_the_sandbox(client_a, tenant_a):
    from tests.factories import CarrierFactory, LabelAccountFactory

    CarrierFactory(tenant=tenant_a, code="usps")
    account = LabelAccountFactory(tenant=tenant_a, api_key="", carriers="usps")

    response = run_action(client_a, LabelAccount, "connect_sandbox", [account.pk])

    assert any("now buy from the sandbox" in m for m in messages_of(response))
    account.refresh_from_db()
    assert account.use_sandbox and account.api_key.startswith("EZTK")
    remote = SandboxLabelAccount.objects.get(api_key=account.api_key)
    assert remote.carriers == ["USPS"]


@pytest.mark.django_db
def test_the_sandbox_switch_is_absent_where_the_sandbox_is_off(client_a, world_a, settings):
    settings.TKERP_SANDBOX_ENABLED = False
    page = client_a.get(admin_url(LabelAccount, "change", world_a.account.pk))
    assert "use_sandbox" not in page.context["adminform"].form.fields
    listing = client_a.get(admin_url(LabelAccount, "changelist"))
    assert "connect_sandbox" not in listing.content.decode()
