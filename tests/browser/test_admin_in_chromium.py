"""The back office in a real browser: log in, see one tenant's orders, switch tenant.

Drives the Debian Chromium headless through chromedriver against the live test server. The
tenant switcher is a form submitted by JavaScript on change, so only a browser proves it works.
"""

import shutil

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from shops.models import Role
from tests.factories import MembershipFactory, OrderFactory, UserFactory

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        # This machine has no network beyond loopback: keep Chromium from trying.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def log_in(browser, live_server, username):
    browser.get(f"{live_server.url}/admin/login/?next=/admin/orders/order/")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys("pass-word-123")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "result_list")))


@pytest.mark.django_db(transaction=True)
def test_staff_sees_only_the_active_tenant_and_switches_in_the_browser(
    browser, live_server, tenant_a, tenant_b
):
    user = UserFactory(username="two-hats")
    MembershipFactory(user=user, tenant=tenant_a, role=Role.OWNER)
    MembershipFactory(user=user, tenant=tenant_b, role=Role.VIEWER)
    OrderFactory(tenant=tenant_a, platform_order_id="ALPHA-1001")
    OrderFactory(tenant=tenant_b, platform_order_id="BRAVO-2002")

    log_in(browser, live_server, "two-hats")
    table = browser.find_element(By.ID, "result_list").text
    assert "ALPHA-1001" in table
    assert "BRAVO-2002" not in table
    assert "Alpha Goods" in browser.find_element(By.ID, "header").text

    switcher = Select(browser.find_element(By.ID, "tenant-select"))
    assert {option.text for option in switcher.options} == {"Alpha Goods", "Bravo Supply"}
    switcher.select_by_visible_text("Bravo Supply")  # submits the form by itself
    WebDriverWait(browser, 15).until(
        ec.text_to_be_present_in_element((By.ID, "header"), "Bravo Supply")
    )
    browser.get(f"{live_server.url}/admin/orders/order/")
    table = browser.find_element(By.ID, "result_list").text
    assert "BRAVO-2002" in table
    assert "ALPHA-1001" not in table
    # A viewer in Bravo: no "Add order" button.
    assert not browser.find_elements(By.CSS_SELECTOR, "a.addlink")
