"""`/admin/r/<content type>/<id>/` must not tell another tenant's id from a missing one (issue 9,
item 11): same status, same page, DEBUG on or off."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.test import override_settings

from inventory.models import Sku
from tests.factories import SkuFactory
from tkerp.tenancy import tenant_context

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("debug", [False, True])
def test_another_tenants_object_and_a_missing_one_answer_alike(client_a, tenant_b, debug):
    with tenant_context(tenant_b):
        theirs = SkuFactory(tenant=tenant_b)
    content_type = ContentType.objects.get_for_model(Sku)
    with override_settings(DEBUG=debug):
        other = client_a.get(f"/admin/r/{content_type.pk}/{theirs.pk}/")
        missing = client_a.get(f"/admin/r/{content_type.pk}/{theirs.pk + 10_000}/")
        garbage = client_a.get(f"/admin/r/{content_type.pk}/not-a-number/")
    assert other.status_code == missing.status_code == garbage.status_code == 404
    pages = [
        response.content.decode().replace(response.request["PATH_INFO"].lstrip("/"), "<path>")
        for response in (other, missing, garbage)
    ]
    assert pages[0] == pages[1] == pages[2]


def test_anonymous_users_are_sent_to_log_in(client, tenant_a):
    content_type = ContentType.objects.get_for_model(Sku)
    response = client.get(f"/admin/r/{content_type.pk}/1/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_a_nul_in_a_text_id_is_the_same_404(rf, user_a, tenant_a):
    # Called past the middleware that refuses NUL in URLs: PostgreSQL refuses it in a query.
    from django.http import Http404

    from logistics.models import ProviderAPIKey
    from tkerp.views import view_on_site

    request = rf.get("/")
    request.user = user_a
    content_type = ContentType.objects.get_for_model(ProviderAPIKey)
    with tenant_context(tenant_a), pytest.raises(Http404):
        view_on_site(request, content_type.pk, "\x00")
