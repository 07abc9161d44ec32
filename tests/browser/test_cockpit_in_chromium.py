"""The cockpit in a real browser: seller staff log in and land on it, read numbers equal to the
database's, watch a number change by itself (htmx, served from our static files), follow a
count to its filtered list, and see the charts drawn."""

from datetime import timedelta

import pytest
from django.utils import timezone
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from orders.models import Order, OrderStatus
from shops.models import Role
from tests.browser.test_admin_in_chromium import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401
from tests.cockpit.helpers import cockpit_world
from tests.factories import MembershipFactory, OrderFactory, UserFactory
from tkerp.tenancy import tenant_context

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


def figure(driver, widget: str, label: str) -> int:
    links = driver.find_elements(By.CSS_SELECTOR, f'[data-widget="{widget}"] a[data-count]')
    for link in links:
        if link.find_element(By.CSS_SELECTOR, ".cockpit-label").text == label:
            return int(link.get_attribute("data-count"))
    raise AssertionError(f"{label!r} not on {widget}")


@pytest.mark.django_db(transaction=True)
def test_seller_staff_read_the_cockpit_follow_a_count_and_see_a_chart(
    browser,  # noqa: F811
    live_server,
    tenant_a,
    tenant_b,
):
    world = cockpit_world(tenant_a)
    cockpit_world(tenant_b)  # another tenant's numbers must not leak in
    user = UserFactory(username="packer")
    MembershipFactory(user=user, tenant=tenant_a, role=Role.OPERATOR)

    browser.get(f"{live_server.url}/admin/login/?next=/admin/")
    browser.find_element(By.NAME, "username").send_keys("packer")
    browser.find_element(By.NAME, "password").send_keys("pass-word-123")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "cockpit")))

    # The numbers are the database's (of tenant A only)
    now = timezone.now()
    with tenant_context(tenant_a):
        overdue = Order.objects.filter(
            status__in=("new", "on_hold", "ready", "allocated"), ship_by__lt=now
        ).count()
        held = Order.objects.filter(status=OrderStatus.ON_HOLD).count()
    assert figure(browser, "shipping", "overdue") == overdue == 3
    assert figure(browser, "holds", "held orders") == held == 3
    assert "Bravo Supply" not in browser.find_element(By.ID, "cockpit").text

    # A chart is drawn: server-rendered SVG with bars
    chart = browser.find_element(By.CSS_SELECTOR, "#chart-orders_10min svg.cockpit-chart")
    assert chart.find_elements(By.CSS_SELECTOR, "rect.bar")
    assert browser.find_element(By.CSS_SELECTOR, "#chart-late_rate svg line.limit")
    # htmx came from our own static files and is running
    assert browser.execute_script("return typeof htmx") == "object"

    # It refreshes by itself: a new overdue order shows up without a reload
    with tenant_context(tenant_a):
        OrderFactory(
            tenant=tenant_a,
            shop=world.shop,
            status=OrderStatus.READY,
            ship_by=now - timedelta(hours=1),
        )
    WebDriverWait(browser, 40, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda b: figure(b, "shipping", "overdue") == overdue + 1
    )

    # Following the count opens the order list filtered to exactly those orders
    link = browser.find_element(By.CSS_SELECTOR, '[data-widget="shipping"] a[data-count]')
    link.click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "result_list")))
    assert "ship_by_due=overdue" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == overdue + 1
