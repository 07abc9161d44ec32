"""A label batch in a real browser, run by a real django-q worker: the seller starts "Print
everything ready", watches the progress bar refresh itself up to 100 %, and downloads the PDF.

The worker is `manage.py qcluster` in its own process on the test database; it buys the labels
from the label API sandbox, paced by the account's rate limit so the run takes a few seconds.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from pypdf import PdfReader
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from logistics.models import LabelBatch, LabelBatchStatus
from tests.browser.test_admin_in_chromium import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401
from tests.factories import MembershipFactory, UserFactory
from tests.logistics.batch_helpers import (  # noqa: F401 - batch_media: autouse
    batch_media,
    connect_label_api,
    print_world,
    ready_parcels,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]
ROOT = Path(__file__).resolve().parents[2]
PARCELS = 10


@pytest.fixture
def worker(batch_media):  # noqa: F811 - the imported fixture
    """A django-q cluster in its own process, on this test's database and media folder."""
    # What this process really connects to (the embedded backend fills the socket in itself).
    params = connection.get_connection_params()
    host = quote(str(params.get("host") or "localhost"), safe="")
    url = f"postgres://{params['user']}@{host}:{params.get('port') or 5432}/{params['dbname']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tkerp.settings_test",
        "DATABASE_URL": url,
        "MEDIA_ROOT": str(batch_media),
        "Q_WORKERS": "1",
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "qcluster"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    yield process
    # As Ctrl-C does: the cluster's own processes ignore SIGINT and its main process stops them
    # in about a second. SIGTERM to the group would kill them under the main one, whose stop
    # then waits out its timeout.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.django_db(transaction=True)
def test_a_batch_runs_in_the_background_and_its_pdf_downloads(
    browser,  # noqa: F811
    live_server,
    worker,
    tenant_a,
    tmp_path,
):
    world = print_world(tenant_a)
    # Two purchases a second: the worker needs about four seconds for ten labels.
    connect_label_api(world, requests_per_second=2, rate_per_second=50, rate_burst=50)
    ready_parcels(world, PARCELS)
    user = UserFactory(username="packer")
    MembershipFactory(user=user, tenant=tenant_a)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )

    browser.get(f"{live_server.url}/admin/login/?next=/admin/logistics/labelbatch/add/")
    browser.find_element(By.NAME, "username").send_keys("packer")
    browser.find_element(By.NAME, "password").send_keys("pass-word-123")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "print-form")))
    Select(browser.find_element(By.NAME, "shop")).select_by_visible_text(
        f"{world.shop.name} ({PARCELS} ready)"
    )
    browser.find_element(By.ID, "start-batch").click()
    WebDriverWait(browser, 15).until(ec.presence_of_element_located((By.ID, "batch-summary")))

    seen: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            percent = browser.find_element(By.CSS_SELECTOR, ".progress-percent").text
        except Exception:  # the fragment is being swapped or the page reloads
            continue
        if not seen or seen[-1] != percent:
            seen.append(percent)
        if percent == "100 %" and browser.find_elements(By.CSS_SELECTOR, "a.download"):
            break
        time.sleep(0.1)
    else:
        stderr = worker.stderr.read1().decode(errors="replace") if worker.poll() else ""
        pytest.fail(f"the batch never reached 100 %: saw {seen} {stderr[-2000:]}")

    assert seen[0] != "100 %", seen  # it was watched while running, not found finished
    assert len(seen) >= 2
    batch = LabelBatch._base_manager.get()
    assert batch.status == LabelBatchStatus.DONE
    figures = browser.find_element(By.CSS_SELECTOR, ".progress-figures").text
    assert f"{PARCELS} done / {PARCELS}" in figures and "0 failed" in figures

    browser.find_element(By.CSS_SELECTOR, "a.download").click()
    target = downloads / f"label-batch-{batch.pk}.pdf"
    WebDriverWait(browser, 30).until(lambda _: target.exists() and target.stat().st_size)
    pages = [page.extract_text() for page in PdfReader(str(target)).pages]
    assert len(pages) == batch.pages
    assert sum("PACKING SLIP" in page for page in pages) == PARCELS
