"""The demo prints out of the box: right after `seed_demo`, `print_batch --shop 1` (and the
admin's "Print everything ready", which runs the same job) buys real labels at the label sandbox
and writes the batch PDF.

Buying runs on threads with their own database connections, so the seeded data is committed
here (a smaller demo than tests/test_seed_demo.py's, seeded in the test)."""

import io
import re
from io import StringIO

import pytest
from django.core.management import call_command
from pypdf import PdfReader

from logistics.batches import label_batch_ready_parcels
from logistics.models import LabelBatch, Shipment, ShipmentStatus
from sandbox.models import SandboxLabelAccount
from shops.models import Shop
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(settings, tmp_path):
    from sandbox.base import reset_rate_limits
    from shops.demo import demo_reset

    settings.MEDIA_ROOT = tmp_path / "media"
    reset_rate_limits()
    call_command("seed_demo", "--orders", "60", stdout=StringIO())
    yield
    demo_reset()


def test_print_batch_buys_the_first_shops_labels_at_the_sandbox(demo):
    shop = Shop._base_manager.select_related("tenant").order_by("pk").first()
    with tenant_context(shop.tenant):
        ready = set(label_batch_ready_parcels(shop=shop).values_list("pk", flat=True))
    assert ready, "the demo has parcels waiting for their labels"
    bought_before = sum(SandboxLabelAccount.objects.values_list("purchases", flat=True))

    out = StringIO()
    call_command("print_batch", "--shop", str(shop.pk), stdout=out, stderr=StringIO())

    summary = out.getvalue().strip().splitlines()[-1]
    match = re.fullmatch(r"batch (\d+): (\d+) printed, 0 failed, (\d+) pages -> (.+)", summary)
    assert match, summary
    assert int(match[2]) == len(ready)
    batch = LabelBatch._base_manager.get(pk=int(match[1]))
    parcels = list(Shipment._base_manager.filter(pk__in=ready))
    assert {parcel.status for parcel in parcels} == {ShipmentStatus.LABELLED}
    from_api = [parcel for parcel in parcels if parcel.label_source == "labelapi"]
    assert from_api, "the label account bought labels"
    bought = sum(SandboxLabelAccount.objects.values_list("purchases", flat=True))
    assert bought - bought_before == len(from_api)
    assert all(parcel.label_file and parcel.shipping_cost > 0 for parcel in from_api)
    with batch.document.open("rb") as handle:
        pages = PdfReader(io.BytesIO(handle.read())).pages
    assert len(pages) == int(match[3])
    text = re.sub(r"\s", "", "".join(page.extract_text() for page in pages))
    for parcel in parcels:
        assert parcel.tracking_number in text
