"""The stock-push suite's sandbox world (four connected shops, three SKUs in stock)."""

from tests.inventory.test_push_sandboxes import sandbox_http, world  # noqa: F401 (fixtures)
