"""`manage.py seed_demo` refuses clearly when it cannot build the demo, writing nothing."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import override_settings

from shops.models import Tenant

pytestmark = pytest.mark.django_db


def test_without_the_sandboxes_the_demo_is_not_half_built():
    with (
        override_settings(TKERP_SANDBOX_ENABLED=False),
        pytest.raises(CommandError, match="TKERP_SANDBOX_ENABLED=1"),
    ):
        call_command("seed_demo")
    assert not Tenant.objects.exists()
    assert not get_user_model().objects.exists()


def test_a_number_of_orders_below_one_is_refused():
    with pytest.raises(CommandError, match="--orders must be at least 1"):
        call_command("seed_demo", "--orders", "0")
    assert not Tenant.objects.exists()
