"""Small helpers for driving the Django admin in the orders and shops suites."""

from django.urls import reverse

NOT_FOUND_MESSAGE = "doesn\u2019t exist"  # Django writes a typographic apostrophe


def admin_url(model, view: str, *args) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


def inlines_empty(page, *, only_first: bool = False) -> dict:
    """The management forms of the change page's inlines (all, or the first), each posting no
    row: what a change form sends for inlines it leaves alone."""
    formsets = page.context["inline_admin_formsets"]
    data = {}
    for inline in formsets[:1] if only_first else formsets:
        prefix = inline.formset.prefix
        data |= {f"{prefix}-TOTAL_FORMS": "0", f"{prefix}-INITIAL_FORMS": "0"}
    return data


def assert_not_found(client, url: str) -> None:
    """The admin's answer for another tenant's object: the same as for a missing one."""
    response = client.get(url)
    assert response.status_code == 302, response.status_code
    assert response["Location"] == reverse("admin:index")
    followed = client.get(url, follow=True)
    assert NOT_FOUND_MESSAGE in followed.content.decode()


def changelist_pks(client, model, query: str = "") -> set[int]:
    response = client.get(admin_url(model, "changelist") + query)
    assert response.status_code == 200, response.status_code
    return {obj.pk for obj in response.context["cl"].result_list}


def run_action(client, model, action: str, pks, query: str = "", **data):
    """POST an admin action the way the changelist form does."""
    payload = {"action": action, "index": 0, "_selected_action": [str(pk) for pk in pks], **data}
    return client.post(admin_url(model, "changelist") + query, payload)


def autocomplete_ids(client, app_label: str, model_name: str, field_name: str, term: str = ""):
    response = client.get(
        reverse("admin:autocomplete"),
        {"app_label": app_label, "model_name": model_name, "field_name": field_name, "term": term},
    )
    assert response.status_code == 200, response.status_code
    return {int(result["id"]) for result in response.json()["results"]}
