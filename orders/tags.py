"""Putting a seller's labels on orders and taking them off again, with an audit event each."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.db import transaction

from orders.events import order_event_add
from orders.holds import order_lock
from orders.models import Order, OrderTag, Tag

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

TAG_NAME_MAX_LENGTH = Tag._meta.get_field("name").max_length


def tag_name_normalise(name: str) -> str:
    """The stored form of a tag name: trimmed, lower case, inner whitespace folded to one dash,
    so `VIP`, ` vip ` and `vip` are one tag. Raises ValidationError for an empty or long name."""
    normalised = re.sub(r"\s+", "-", (name or "").strip().lower())
    if not normalised:
        raise ValidationError("A tag needs a name.")
    if len(normalised) > TAG_NAME_MAX_LENGTH:
        raise ValidationError(f"A tag name has at most {TAG_NAME_MAX_LENGTH} characters.")
    return normalised


def tag_get_or_create(*, name: str, tenant_id: int) -> Tag:
    """The tenant's tag called `name` (normalised), created if missing; safe under races."""
    tag, _ = Tag.objects.get_or_create(tenant_id=tenant_id, name=tag_name_normalise(name))
    return tag


def order_tag_add(
    *, order: Order, tag_name: str, user: AbstractBaseUser | None = None
) -> tuple[Tag, bool]:
    """Tag `order`; returns the tag and whether the order did not carry it before."""
    name = tag_name_normalise(tag_name)
    with transaction.atomic():
        order = order_lock(order=order)
        tag = tag_get_or_create(name=name, tenant_id=order.tenant_id)
        _, created = OrderTag.objects.get_or_create(tenant_id=order.tenant_id, order=order, tag=tag)
        if created:
            order_event_add(
                order=order,
                kind="tag.added",
                message=f"Tagged: {tag.name}",
                data={"tag": tag.name},
                user=user,
            )
    return tag, created


def order_tag_remove(*, order: Order, tag_name: str, user: AbstractBaseUser | None = None) -> bool:
    """Take the tag off `order`; returns whether it was there. The tag itself is kept."""
    try:
        name = tag_name_normalise(tag_name)
    except ValidationError:
        return False
    with transaction.atomic():
        order = order_lock(order=order)
        deleted, _ = OrderTag.objects.filter(order=order, tag__name=name).delete()
        if deleted:
            order_event_add(
                order=order,
                kind="tag.removed",
                message=f"Untagged: {name}",
                data={"tag": name},
                user=user,
            )
    return bool(deleted)
