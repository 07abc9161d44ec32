"""Writing an order's audit trail: one function, so every door records events the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orders.models import EventSource, Order, OrderEvent

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser


def order_event_add(
    *,
    order: Order,
    kind: str,
    message: str = "",
    data: dict[str, Any] | None = None,
    user: AbstractBaseUser | None = None,
    source: str | None = None,
) -> OrderEvent:
    """Append one event to `order`'s audit trail.

    The source defaults to "user" when a person did it and "system" otherwise. Events are never
    edited afterwards, so the caller passes everything worth keeping in `data`.
    """
    if source is None:
        source = EventSource.USER if user is not None else EventSource.SYSTEM
    return OrderEvent.objects.create(
        tenant_id=order.tenant_id,
        order=order,
        kind=kind,
        message=message[:500],
        data=data or {},
        source=source,
        user=user if user is not None and user.is_authenticated else None,
    )
