"""Driving the admin's import/export pages and resources the way a person or a task would."""

import csv
import io

import tablib
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.forms import ModelChoiceField
from django.urls import reverse

from tkerp.tenancy import TenantOwnedModel, all_tenants


def admin_url(model, action: str, *args) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{action}", args=args)


def csv_dataset(text: str) -> tablib.Dataset:
    return tablib.Dataset().load(text.strip() + "\n", format="csv")


def csv_rows(content: bytes | str) -> list[dict]:
    if isinstance(content, bytes):
        content = content.decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(content)))


def _format_index(form, title: str = "csv") -> str:
    for value, label in form.fields["format"].choices:
        if str(label).lower() == title:
            return value
    raise AssertionError(f"no {title} format offered: {form.fields['format'].choices}")


def admin_export(client, model, **extra) -> list[dict]:
    """Export the model's changelist as CSV through the admin, every column selected."""
    url = admin_url(model, "export")
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    form = page.context["form"]
    data = {"format": _format_index(form), "resource": "0", **extra}
    for name, field in form.fields.items():
        if name not in ("format", "resource", "export_items") and field.initial is not False:
            data[name] = "on"
    response = client.post(url, data)
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/csv"), response.content[:500]
    return csv_rows(response.content)


def admin_import_preview(client, model, text: str, filename: str = "upload.csv"):
    """Upload a CSV: the dry run (preview) page, with `result` and maybe `confirm_form`."""
    url = admin_url(model, "import")
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    upload = SimpleUploadedFile(filename, text.strip().encode() + b"\n", "text/csv")
    return client.post(
        url, {"format": _format_index(page.context["form"]), "resource": "0", "import_file": upload}
    )


def admin_import_confirm(client, model, preview):
    """Confirm a clean preview, as the "Confirm import" button does."""
    confirm_form = preview.context["confirm_form"]
    assert confirm_form is not None, "the preview had errors; nothing to confirm"
    data = {name: confirm_form.initial.get(name, "") for name in confirm_form.fields}
    return client.post(admin_url(model, "process_import"), data)


def admin_import(client, model, text: str, filename: str = "upload.csv"):
    """Preview then confirm; returns the confirm response (a redirect to the changelist)."""
    preview = admin_import_preview(client, model, text, filename)
    assert preview.status_code == 200
    assert preview.context.get("confirm_form") is not None, _preview_errors(preview)
    return admin_import_confirm(client, model, preview)


def _preview_errors(preview) -> str:
    result = preview.context.get("result")
    if result is None:
        return str(preview.context["form"].errors)
    invalid = [(row.number, row.error_dict) for row in result.invalid_rows]
    errors = [(number, [str(e.error) for e in errs]) for number, errs in result.row_errors()]
    return f"invalid={invalid} errors={errors} base={[str(e.error) for e in result.base_errors]}"


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def assert_no_foreign_choices(form, tenant_b):
    """No model-choice field of `form` offers a row of tenant B."""
    for name, field in form.fields.items():
        if not isinstance(field, ModelChoiceField):
            continue
        model = field.queryset.model
        if not issubclass(model, TenantOwnedModel):
            continue
        if name == field.queryset.model._meta.pk.name:
            continue  # the row's own id, not a choice
        offered = set(field.queryset.values_list("pk", flat=True))
        with all_tenants():  # the caller may be scoped to tenant A; B's rows are looked up
            foreign = set(model._base_manager.filter(tenant=tenant_b).values_list("pk", flat=True))
        assert foreign, f"test needs tenant B rows for {name}"
        assert not offered & foreign, f"{name} offers tenant B's rows"
