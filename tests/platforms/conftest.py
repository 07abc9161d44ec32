"""Fixtures the sandbox-backed connector tests share (eBay, Shopify).

A module provides `shop` (the platform's shop with its listings); these connect it to its
sandbox and build the connector over real HTTP. Modules that need something else (Amazon's
recorded sleeps, TikTok's shop_store) define their own fixtures of the same names, which win.
"""

import pytest

from sandbox.connect import sandbox_connect
from sandbox.models import SandboxStore
from shops.platforms import connector_for


@pytest.fixture
def store(shop) -> SandboxStore:
    store = sandbox_connect(shop=shop)
    shop.refresh_from_db()
    return store


@pytest.fixture
def sleeps() -> list[float]:
    """What the connector slept for (backoff, rate limits), recorded instead of slept."""
    return []


@pytest.fixture
def connector(shop, store, sleeps):
    return connector_for(shop, sleep=sleeps.append, backoff_base=0.01)
