"""Test plumbing shared by the order-sync suites (tests/shops, tests/tkerp, tests/e2e)."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def django_q_sync():
    """Run django-q tasks inline, as `async_task` is called (no cluster in tests)."""
    from django_q.conf import Conf

    previous = Conf.SYNC
    Conf.SYNC = True
    try:
        yield
    finally:
        Conf.SYNC = previous


class LoopbackReceiver:
    """A real HTTP server on 127.0.0.1 recording requests (an alert webhook's chat gateway, or
    whatever an attacker would run on an internal host). It answers every GET and POST with
    `status`, `body` and `headers`."""

    def __init__(self, status: int = 200, *, body: bytes = b"{}", headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {"Content-Type": "application/json"}
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.received.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": body,
                    }
                )
                self.send_response(receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/alerts"

    def json(self, index: int = -1) -> dict:
        return json.loads(self.received[index]["body"])

    def __enter__(self) -> LoopbackReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- shops connected to a platform sandbox ------------------------------------------------------


def connect_shop(tenant, platform: str, *, sku_codes=("MUG-01", "CAP-02", "PIN-03"), **fields):
    """A shop of `tenant` with listings, connected to its platform's sandbox: (shop, store)."""
    from inventory.models import Sku
    from sandbox.connect import sandbox_connect
    from tests.factories import ListingFactory, ShopFactory, SkuFactory

    fields.setdefault("name", f"{tenant.name} {platform}")
    shop = ShopFactory(tenant=tenant, platform=platform, platform_shop_id="", **fields)
    for code in sku_codes:
        sku = Sku._base_manager.filter(tenant=tenant, code=code).first() or SkuFactory(
            tenant=tenant, code=code
        )
        ListingFactory(tenant=tenant, shop=shop, sku=sku)
    store = sandbox_connect(shop=shop)
    shop.refresh_from_db()
    return shop, store


def add_orders(store, count: int, *, start, step=None, seed: int = 0) -> list:
    """`count` generated paid orders in the sandbox store, updated at start, start+step, ..."""
    import random
    from datetime import timedelta

    from sandbox.base import sandbox_for
    from sandbox.models import SandboxProduct

    step = step if step is not None else timedelta(seconds=1)
    sandbox = sandbox_for(store.platform)
    products = list(SandboxProduct.objects.filter(store=store).order_by("pk"))
    orders = []
    for number in range(count):
        payload = sandbox.generate_order(
            store=store,
            rng=random.Random(seed + number),
            products=products,
            now=start + number * step,
        )
        orders.append(sandbox.load_order(store=store, payload=payload))
    return orders


def sync_now(shop):
    """One sync pass of `shop` against its sandbox, tasks run inline; the pass must succeed."""
    from shops.platforms import connector_for
    from shops.sync import shop_sync
    from tkerp.tenancy import tenant_context

    with tenant_context(shop.tenant), django_q_sync():
        run = shop_sync(
            shop=shop, connector=connector_for(shop, sleep=lambda _: None, backoff_base=0.001)
        )
    assert run.status == "success", run.error
    return run


def platform_cancels(store, platform_order_id: str) -> None:
    """TikTok cancels the order on its side (for a shipped one: a parcel never collected): the
    order and its items say CANCELLED, with a later update time."""
    from datetime import UTC, datetime

    from django.utils import timezone

    from sandbox.models import SandboxOrder

    row = SandboxOrder.objects.get(store=store, order_id=platform_order_id)
    stamp = max(int(timezone.now().timestamp()), int(row.payload["update_time"]) + 1)
    row.payload.update(status="CANCELLED", cancel_time=stamp, update_time=stamp)
    for item in row.payload["line_items"]:
        item.update(display_status="CANCELLED", package_status="CANCELLED")
    row.status, row.updated = "CANCELLED", datetime.fromtimestamp(stamp, UTC)
    row.save(update_fields=["payload", "status", "updated"])
