"""Order files for a supplier without an API: made at its times in the tenant's timezone (and on
demand), matching its parcels (its item codes, quantities, recipients), CSV and XLSX read back,
e-mailed as attachments, downloadable by the tenant only, and made once per slot."""

import csv
import io
from contextlib import contextmanager
from datetime import datetime
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import time_machine
from django.core import mail

from logistics.models import Provider, ProviderOrderFile
from logistics.provider_files import provider_order_files_due
from tests.e2e.helpers import django_q_sync
from tests.logistics.provider_helpers import provider_world
from tests.orders.admin_helpers import admin_url, assert_not_found, changelist_pks, run_action
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = (2026, 11, 20)


def local(hour, minute=0):
    return datetime(*DAY, hour, minute, tzinfo=SHANGHAI)


@pytest.fixture
def world(tenant_a):
    tenant_a.timezone = "Asia/Shanghai"
    tenant_a.save()
    world = provider_world(tenant_a)
    world.provider.order_file_enabled = True
    world.provider.save()
    return world


@pytest.fixture
def step(django_capture_on_commit_callbacks):
    @contextmanager
    def step(moment):
        with (
            time_machine.travel(moment, tick=False),
            django_q_sync(),
            django_capture_on_commit_callbacks(execute=True),
        ):
            yield

    return step


def files(tenant):
    with tenant_context(tenant):
        return list(ProviderOrderFile.objects.order_by("slot_at", "pk"))


def csv_rows(content: bytes | str) -> list[dict]:
    """Rows of a CSV file (Django hands a text attachment back decoded)."""
    text = content.decode("utf-8-sig") if isinstance(content, bytes) else content.lstrip("\ufeff")
    return list(csv.DictReader(io.StringIO(text)))


def wanted(row):
    return (
        row["parcel"],
        row["supplier_item_code"],
        row["our_sku"],
        int(row["quantity"]),
        row["recipient_name"],
        row["postal_code"],
    )


def test_the_09_00_file_matches_its_parcels_and_is_emailed_once(world, step):
    with step(local(8)):
        first = world.order(mugs=1, caps=2, recipient_name="Li Wei", postal_code="94016")
        second = world.order(mugs=3, caps=0, recipient_name="=HYPERLINK(1)", postal_code="94105")
    with step(local(8, 59)):  # yesterday's 15:00 slot: nothing was dispatched before it
        assert provider_order_files_due() == {"made": 0, "emailed": 0}
    assert mail.outbox == []

    with step(local(9)):
        assert provider_order_files_due()["made"] == 1
    with step(local(9, 5)):  # the same slot again: no second file, no second e-mail
        assert provider_order_files_due() == {"made": 0, "emailed": 0}

    made = [f for f in files(world.tenant) if f.parcels]
    assert len(made) == 1
    order_file = made[0]
    assert order_file.slot_at == local(9) and order_file.trigger == "schedule"
    assert order_file.parcels == 2 and order_file.emailed_at is not None

    a, b = world.parcel(first).reference, world.parcel(second).reference
    expected = sorted(
        [
            (a, "F-MUG-01", "MUG", 1, "Li Wei", "94016"),
            (a, "F-CAP-07", "CAP", 2, "Li Wei", "94016"),
            (b, "F-MUG-01", "MUG", 3, "'=HYPERLINK(1)", "94105"),  # formula neutralised
        ]
    )
    (email,) = mail.outbox
    assert email.to == ["orders@factory.example"] and "2 parcel(s)" in email.subject
    attached = {name: content for name, content, _type in email.attachments}
    csv_name = next(name for name in attached if name.endswith(".csv"))
    xlsx_name = next(name for name in attached if name.endswith(".xlsx"))
    assert csv_name.startswith("FAC-20261120-0900")  # the slot, in the tenant's timezone
    assert sorted(wanted(row) for row in csv_rows(attached[csv_name])) == expected

    sheet = openpyxl.load_workbook(io.BytesIO(attached[xlsx_name])).active
    header, *rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    as_dicts = [dict(zip(header, row, strict=True)) for row in rows]
    assert sorted(wanted(row) for row in as_dicts) == expected

    with step(local(10)):
        third = world.order(mugs=0, caps=1, recipient_name="Sam Lee", address_line1="500 Howard St")
    with step(local(15)):
        assert provider_order_files_due()["made"] == 1
    latest = files(world.tenant)[-1]
    assert latest.slot_at == local(15) and latest.parcels == 1
    assert [row["parcel"] for row in csv_rows(latest.csv_file.read())] == [
        world.parcel(third).reference
    ]
    assert len(mail.outbox) == 2


def test_on_demand_from_the_admin_then_nothing_new(world, step, client_a):
    with step(local(11)):
        world.order()
    with step(local(11, 30)):
        response = run_action(client_a, Provider, "order_file_now", [world.provider.pk])
    assert response.status_code == 302
    (order_file,) = files(world.tenant)
    assert order_file.trigger == "manual" and order_file.parcels == 1
    assert len(mail.outbox) == 1

    with step(local(11, 31)):
        response = run_action(client_a, Provider, "order_file_now", [world.provider.pk])
    followed = client_a.get(response["Location"])
    assert "has no new parcels" in followed.content.decode()
    assert len(files(world.tenant)) == 1
    with step(local(15)):  # the scheduled slot finds the parcel already sent
        provider_order_files_due()
    assert [f.parcels for f in files(world.tenant)] == [1, 0]


def test_downloads_are_the_tenants_own(world, step, client_a, client_b):
    with step(local(8)):
        world.order()
    with step(local(9)):
        provider_order_files_due()
    (order_file,) = [f for f in files(world.tenant) if f.parcels]
    csv_url = admin_url(ProviderOrderFile, "download", order_file.pk, "csv")
    xlsx_url = admin_url(ProviderOrderFile, "download", order_file.pk, "xlsx")

    response = client_a.get(csv_url)
    assert response.status_code == 200
    assert len(csv_rows(b"".join(response.streaming_content))) == 2
    assert client_a.get(xlsx_url).status_code == 200

    assert client_b.get(csv_url).status_code == 404
    assert client_b.get(xlsx_url).status_code == 404
    assert changelist_pks(client_b, ProviderOrderFile) == set()
    assert_not_found(client_b, admin_url(ProviderOrderFile, "change", order_file.pk))
    # Another tenant cannot make a file for this provider either.
    run_action(client_b, Provider, "order_file_now", [world.provider.pk])
    assert len(files(world.tenant)) == 1


def test_the_email_task_given_another_tenants_file_does_nothing(world, tenant_b, step):
    from logistics.tasks import email_order_file

    with step(local(8)):
        world.order()
    with time_machine.travel(local(9), tick=False):
        provider_order_files_due()  # its e-mail task is not run here
    (order_file,) = [f for f in files(world.tenant) if f.parcels]
    assert email_order_file(tenant_b.pk, order_file.pk) == "skipped"
    assert mail.outbox == []
    assert email_order_file(world.tenant.pk, order_file.pk) == "sent"
    assert len(mail.outbox) == 1


def test_bad_file_times_are_refused_with_a_clear_message():
    from django.core.exceptions import ValidationError

    from logistics.models import order_file_times_parse, validate_order_file_times

    assert order_file_times_parse("15:00, 9:30,15:00") == [(9, 30), (15, 0)]
    with pytest.raises(ValidationError, match="“9am” is not a time like 09:00"):
        validate_order_file_times("09:00,9am")
    with pytest.raises(ValidationError, match="“25:00” is not a time of day"):
        validate_order_file_times("25:00")
