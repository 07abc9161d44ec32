"""Manual labels: the tracking number is typed on the parcel; tkerp draws a plain 4x6 label
for it (ReportLab, Code 128), and refuses with a clear reason while there is none."""

import io

import pytest
from pypdf import PdfReader

from logistics.labels.base import LabelError
from logistics.labels.manual import ManualLabelSource
from logistics.labels.sources import label_source_for
from logistics.labels.store import shipment_label_buy, shipment_label_void
from logistics.models import Shipment, ShipmentStatus
from tests.inventory.helpers import admin_url, messages_of
from tests.logistics.labels_helpers import label_world, page_size, pdf_text
from tests.orders.admin_helpers import inlines_empty, run_action

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("label_media")]


@pytest.fixture
def world(tenant_a):
    # The label account covers USPS only: UPS parcels are labelled by hand.
    return label_world(tenant_a, carriers="usps")


def test_no_tracking_number_yet_is_refused_with_the_reason(world):
    parcel = world.parcel("ups", reference="HAND-1")
    assert isinstance(label_source_for(parcel), ManualLabelSource)

    with pytest.raises(LabelError) as caught:
        shipment_label_buy(shipment=parcel)

    assert caught.value.code == "no_tracking"
    assert "HAND-1 has no tracking number yet" in caught.value.reason
    assert Shipment._base_manager.get(pk=parcel.pk).status == ShipmentStatus.PENDING


def test_a_typed_tracking_number_gets_a_drawn_label(world, django_capture_on_commit_callbacks):
    parcel = world.parcel("ups", reference="HAND-2")
    Shipment._base_manager.filter(pk=parcel.pk).update(tracking_number="1Z5R89390357567127")

    stored = shipment_label_buy(shipment=parcel)

    assert stored.status == ShipmentStatus.LABELLED
    assert stored.label_source == "manual" and stored.shipping_cost == 0
    with stored.label_file.open("rb") as handle:
        document = handle.read()
    assert page_size(document) == (288, 432)
    text = pdf_text(document).replace(" ", "")
    assert "1Z5R89390357567127" in text
    assert "UPS" in text and "GROUND" in text and "JAMIEBUYER" in text and "HAND-2" in text
    assert len(PdfReader(io.BytesIO(document)).pages) == 1

    with django_capture_on_commit_callbacks(execute=True):
        voided = shipment_label_void(shipment=stored)
    assert voided.tracking_number == "" and voided.status == ShipmentStatus.PENDING


def test_a_parcel_without_a_service_is_refused(world):
    parcel = world.parcel(service="")
    Shipment._base_manager.filter(pk=parcel.pk).update(tracking_number="1Z5R89390357567127")
    with pytest.raises(LabelError, match="has no carrier service"):
        shipment_label_buy(shipment=parcel)


@pytest.mark.django_db(transaction=True)
def test_typed_in_the_admin_then_printed(client_a, tenant_a, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    world = label_world(tenant_a, carriers="usps")
    parcel = world.parcel("ups", reference="HAND-3")
    page = client_a.get(admin_url(Shipment, "change", parcel.pk))
    form = page.context["adminform"].form
    data = {
        name: form.initial.get(name) or ""
        for name in form.fields
        if form.initial.get(name) is not None
    }
    data.update(
        {
            "order": parcel.order_id,
            "warehouse": parcel.warehouse_id,
            "service": parcel.service_id,
            "status": "pending",
            "tracking_number": "1Z5R89390357567127",
            "weight_grams": "0",
        }
    )
    # Every inline on the page (lines, tracking events...) posts its empty management form.
    data |= inlines_empty(page)
    response = client_a.post(admin_url(Shipment, "change", parcel.pk), data)
    assert response.status_code == 302, response.context["adminform"].form.errors

    response = run_action(client_a, Shipment, "buy_labels", [parcel.pk])

    assert any("Labels ready for 1 parcel(s)" in m for m in messages_of(response))
    stored = Shipment._base_manager.get(pk=parcel.pk)
    assert stored.label_source == "manual" and stored.tracking_number == "1Z5R89390357567127"


def label_fonts(document: bytes) -> set[str]:
    """The base font names the label's page uses."""
    page = PdfReader(io.BytesIO(document)).pages[0]
    fonts = page["/Resources"]["/Font"]
    return {str(font.get_object()["/BaseFont"]) for font in fonts.values()}


def test_a_chinese_recipient_prints_in_the_cjk_font(world):
    """Names and addresses in Chinese print with the CJK font of logistics.pdf_fonts (a subset
    embedded in the label); read back, the text is the Chinese the parcel carries."""
    parcel = world.parcel(
        "ups",
        reference="HAND-CJK",
        recipient_name="王小明",
        address_line2="海景花园 3栋 1201室",
    )
    Shipment._base_manager.filter(pk=parcel.pk).update(tracking_number="1Z5R89390357567127")

    stored = shipment_label_buy(shipment=parcel)

    with stored.label_file.open("rb") as handle:
        document = handle.read()
    text = pdf_text(document).replace(" ", "")
    assert "王小明" in text and "海景花园" in text and "3栋1201室" in text
    assert "1Z5R89390357567127" in text and "HAND-CJK" in text
    fonts = label_fonts(document)
    assert any("NotoSansCJK" in font for font in fonts), fonts


def test_a_latin_label_embeds_no_font(world):
    parcel = world.parcel("ups", reference="HAND-LATIN")
    Shipment._base_manager.filter(pk=parcel.pk).update(tracking_number="1Z5R89390357567127")

    stored = shipment_label_buy(shipment=parcel)

    with stored.label_file.open("rb") as handle:
        assert label_fonts(handle.read()) == {"/Helvetica", "/Helvetica-Bold"}


def test_a_number_another_parcel_holds_is_refused_naming_it(world):
    """The label's number is written under the unique constraint (not checked by a query
    first): when another parcel of that carrier holds it, the seller reads which one, and
    nothing of the label is kept."""
    first = world.parcel("ups", reference="HAND-FIRST")
    Shipment._base_manager.filter(pk=first.pk).update(tracking_number="1Z5R89390357567127")
    shipment_label_buy(shipment=first)
    second = world.parcel("ups", reference="HAND-SECOND")
    # The same number typed on a second parcel (its carrier is only set with the label).
    Shipment._base_manager.filter(pk=second.pk).update(tracking_number="1Z5R89390357567127")

    with pytest.raises(LabelError) as caught:
        shipment_label_buy(shipment=second)

    assert caught.value.code == "duplicate_tracking"
    assert "is already on parcel HAND-FIRST" in caught.value.reason
    kept = Shipment._base_manager.get(pk=second.pk)
    assert kept.status == ShipmentStatus.PENDING and not kept.label_file
    assert kept.carrier_id is None
