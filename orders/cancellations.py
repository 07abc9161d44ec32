"""Buyers' cancellation requests: the inbox, answering them on the platform, closing the order.

Requests arrive two ways and meet in one row per (tenant, shop, platform cancel id):
- the platform's own cancellation list (TikTok), through `cancellations_apply` after each sync;
- an order stored with the platform's "buyer asked to cancel" flag (`Order.cancel_answer_by`
  set), through `cancellations_from_orders`. Platforms without cancel ids (Shopify, Amazon) are
  keyed by the order id; eBay's id is read from the order. A TikTok request first seen this way
  (a webhook ran before the sync) is keyed by the order id until the sync, or the answer, finds
  its real id.

Answering (`cancellation_approve`, `cancellation_reject`) claims the request with a conditional
UPDATE, asks the platform with no transaction open, then records the answer: answering twice asks
the platform once, and a platform error leaves the request pending with the error on it. An
approved request closes the order (`order_cancel_close`): pending and labelled shipments are
cancelled (a bought label goes back for a refund in the background, `logistics.labels.cancelled`),
shipments already with a provider are held for interception, reserved stock is released, and
`order_can_ship` says no from then on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from logistics.models import InterceptState, Shipment, ShipmentStatus
from logistics.webhooks import SHIPMENT_CANCELLED, provider_event_emit
from orders.events import order_event_add
from orders.models import (
    OPEN_STATUSES,
    CancellationRequest,
    CancellationStatus,
    EventSource,
    Order,
    OrderHold,
    OrderStatus,
    SlaState,
    TenantOrderPolicy,
)
from shops.platforms import connector_class, connector_for
from shops.platforms.base import PlatformError
from tkerp.alerts import alert_raise
from tkerp.models import AlertSeverity
from tkerp.tenancy import tenant_context

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from shops.models import Shop, Tenant
    from shops.platforms.base import CancellationRequest as PlatformCancellation
    from shops.platforms.base import Connector

logger = logging.getLogger("tkerp.cancellations")

APPROVE = "approve"
REJECT = "reject"
CANCEL_ANSWER_ALERT = "cancel.answer_due"
# A claim older than this is taken to belong to a worker that died mid-answer.
CLAIM_TIMEOUT = timedelta(minutes=5)
# The platform's final statuses that show our answer (the row's decision) was taken.
_ANSWERED_AS = {
    APPROVE: (CancellationStatus.APPROVED, CancellationStatus.AUTO_CANCELLED),
    REJECT: (CancellationStatus.REJECTED,),
}

# Which answers each platform takes through its API. Elsewhere the answer is recorded here only:
# Shopify has no request to reject (the buyer wrote to the seller), Amazon has no answer API.
PLATFORM_ANSWERS: dict[str, frozenset[str]] = {
    "tiktok": frozenset({APPROVE, REJECT}),
    "ebay": frozenset({APPROVE, REJECT}),
    "shopify": frozenset({APPROVE}),
}
# Reasons offered when the platform has no reason codes of its own.
GENERIC_REJECT_REASONS: tuple[tuple[str, str], ...] = (
    ("already_shipped", "The order has already shipped"),
    ("already_packed", "The order has already been packed"),
    ("buyer_agreed", "The buyer agreed to keep the order"),
    ("other", "Other (see comment)"),
)
# Shipments that mean nothing was picked, labelled or handed over yet.
UNSTARTED_SHIPMENTS = (ShipmentStatus.PENDING, ShipmentStatus.CANCELLED)
PROVIDER_SHIPMENTS = (ShipmentStatus.SENT_TO_PROVIDER, ShipmentStatus.CONFIRMED)
SHIPPED_SHIPMENTS = (
    ShipmentStatus.SHIPPED,
    ShipmentStatus.IN_TRANSIT,
    ShipmentStatus.DELIVERED,
)
AUTO_APPROVE_STATUSES = (OrderStatus.NEW, OrderStatus.ON_HOLD, OrderStatus.READY)


class CancellationError(Exception):
    """The answer could not be given; the request stays pending and carries the message."""


def cancel_reject_reasons(platform: str) -> list[tuple[str, str]]:
    """The reject reasons a person may pick for a request on `platform`: the connector's own
    reason codes where it declares them (TikTok), else a generic list."""
    try:
        reasons = connector_class(platform).cancel_reject_reasons
    except ValueError:
        reasons = ()
    return list(reasons or GENERIC_REJECT_REASONS)


def _user(user: AbstractBaseUser | None):
    return user if user is not None and user.is_authenticated else None


# --- shipping guard ---------------------------------------------------------------------------


def order_ship_blocker(order: Order, *, holds: bool = False) -> str | None:
    """Why `order` must not ship now, or None. Anything that ships (labels, provider pushes,
    tracking upload) asks this first. With `holds`, an order on hold is refused too (with its
    hold codes): a label tells the platform the order ships, so it waits for the release."""
    if order.status == OrderStatus.CANCELLED:
        return "the order is cancelled"
    states = set(
        CancellationRequest._base_manager.filter(
            tenant_id=order.tenant_id, order_id=order.pk
        ).values_list("status", flat=True)
    )
    blocker = _ship_blocker(order.status, states)
    if blocker is None and holds and order.status == OrderStatus.ON_HOLD:
        blocker = _hold_blockers(tenant_id=order.tenant_id, order_ids=[order.pk])[order.pk]
    return blocker


def orders_ship_blockers(
    *, tenant_id: int, order_ids: Iterable[int], holds: bool = False
) -> dict[int, str | None]:
    """`order_ship_blocker` of many orders of one tenant in one query (a second one only when
    `holds` and some are on hold), from their current rows (not from instances read earlier):
    {order id: why it must not ship, or None}. An order that no longer exists is "cancelled"."""
    ids = set(order_ids)
    statuses: dict[int, str] = {}
    states: dict[int, set] = {pk: set() for pk in ids}
    rows = Order._base_manager.filter(tenant_id=tenant_id, pk__any=sorted(ids)).values_list(
        "pk", "status", "cancel_requests__status"
    )
    for pk, status, request in rows:
        statuses[pk] = status
        if request is not None:
            states[pk].add(request)
    blockers = {
        pk: _ship_blocker(statuses.get(pk, OrderStatus.CANCELLED), states[pk]) for pk in ids
    }
    if holds:
        held = [
            pk
            for pk, blocker in blockers.items()
            if blocker is None and statuses.get(pk) == OrderStatus.ON_HOLD
        ]
        if held:
            blockers.update(_hold_blockers(tenant_id=tenant_id, order_ids=held))
    return blockers


#: How `order_ship_blocker(..., holds=True)` begins its answer for an order on hold.
ON_HOLD_BLOCKER = "the order is on hold"


def _hold_blockers(*, tenant_id: int, order_ids: list[int]) -> dict[int, str]:
    """{order id: "the order is on hold (codes); release it first"} for orders on hold."""
    codes: dict[int, list[str]] = {pk: [] for pk in order_ids}
    for pk, code in (
        OrderHold._base_manager.filter(
            tenant_id=tenant_id, order_id__in=order_ids, released_at__isnull=True
        )
        .order_by("code")
        .values_list("order_id", "code")
    ):
        codes[pk].append(code)
    return {
        pk: f"{ON_HOLD_BLOCKER} ({', '.join(found) or 'no reason'}); release it first"
        for pk, found in codes.items()
    }


def _ship_blocker(status: str, states: set) -> str | None:
    if status == OrderStatus.CANCELLED:
        return "the order is cancelled"
    if CancellationStatus.APPROVED in states or CancellationStatus.AUTO_CANCELLED in states:
        return "a cancellation of this order was approved"
    if CancellationStatus.PENDING in states:
        return "the buyer asked to cancel; answer the request first"
    return None


def order_can_ship(order: Order) -> bool:
    """False once the order is cancelled or has a cancellation request approved or pending."""
    return order_ship_blocker(order) is None


# --- closing the order ------------------------------------------------------------------------


def order_cancel_close(
    *,
    order: Order,
    user: AbstractBaseUser | None = None,
    reason: str = "",
    source: str | None = None,
) -> bool:
    """Cancel `order` here after its cancellation was approved; returns False if it already was
    cancelled (pending shipments are still cancelled then).

    Pending and labelled shipments are cancelled; a labelled one's label is refunded in the
    background, not here (`logistics.labels.cancelled`: no outside call in this transaction, and
    never asked twice). A provider that already holds a parcel is asked to stop it
    (`intercept_state=requested`, a `shipment.cancelled` webhook), and its units stay reserved
    until it answers (`shipment_intercept_resolve`). The rest of the reserved stock is released.
    Refuses (CancellationError) an order with a shipment already on its way.
    """
    from inventory.reservations import order_release

    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        shipments = list(Shipment.objects.select_for_update().filter(order=order).order_by("pk"))
        if any(shipment.status in SHIPPED_SHIPMENTS for shipment in shipments):
            raise CancellationError(
                f"order {order.platform_order_id} has a parcel on its way; it cannot be cancelled"
            )
        now = timezone.now()
        to_cancel = order_parcels_stop(
            order=order, shipments=shipments, user=user, reason=reason, source=source
        )
        closing = order.status != OrderStatus.CANCELLED
        if closing or to_cancel:
            order_release(order=order, reason="cancelled")
        if closing:
            Order.objects.filter(pk=order.pk).update(
                status=OrderStatus.CANCELLED,
                cancelled_at=order.cancelled_at or now,
                sla_state=SlaState.OK,
                updated_at=now,
            )
            order_event_add(
                order=order,
                kind="cancelled",
                message="Cancelled at the buyer's request" + (f" ({reason})" if reason else ""),
                data={"previous_status": order.status, "shipments_cancelled": to_cancel},
                user=user,
                source=source,
            )
    return closing


def order_parcels_stop(
    *,
    order: Order,
    shipments: Iterable[Shipment],
    user: AbstractBaseUser | None = None,
    reason: str = "",
    source: str | None = None,
) -> list[int]:
    """What cancelling `order` does to its parcels (locked, as the order is, by the caller):
    pending and labelled ones are cancelled (a label is refunded in the background,
    `logistics.labels.cancelled`) and a labelled one's number not sent yet is withdrawn (the
    platform would count the cancelled order shipped, and tell its buyer so); a provider holding
    one is asked to stop it (`shipments_intercept_request`). Parcels on their way are left as
    they are. Returns the ids of the parcels cancelled now; a second call cancels nothing."""
    from logistics.outbox import tracking_pushes_withdraw

    shipments = list(shipments)
    to_cancel = [
        s.pk for s in shipments if s.status in (ShipmentStatus.PENDING, ShipmentStatus.LABELLED)
    ]
    if to_cancel:
        Shipment.objects.filter(pk__in=to_cancel).update(
            status=ShipmentStatus.CANCELLED, updated_at=timezone.now()
        )
        tracking_pushes_withdraw(shipment_ids=to_cancel)
    shipments_intercept_request(
        order=order, shipments=shipments, user=user, reason=reason, source=source
    )
    return to_cancel


def shipments_intercept_request(
    *,
    order: Order,
    shipments: Iterable[Shipment],
    user: AbstractBaseUser | None = None,
    reason: str = "",
    source: str | None = None,
) -> list[Shipment]:
    """Ask the provider holding each of the cancelled `order`'s `shipments` that was not asked
    yet to stop it (`intercept_state=requested`, a `shipment.cancelled` webhook, an event);
    their units stay reserved until it answers (`shipment_intercept_resolve`). Returns the
    parcels asked now. The caller holds the order's lock."""
    now = timezone.now()
    asked = []
    for shipment in shipments:
        if (
            shipment.status not in PROVIDER_SHIPMENTS
            or shipment.intercept_state != InterceptState.NONE
        ):
            continue
        shipment.intercept_state = InterceptState.REQUESTED
        Shipment.objects.filter(pk=shipment.pk).update(
            intercept_state=InterceptState.REQUESTED, updated_at=now
        )
        order_event_add(
            order=order,
            kind="shipment.intercept_requested",
            message=f"Intercept requested: shipment {shipment.reference} is with "
            f"{shipment.provider or 'the provider'}; its stock stays reserved until "
            "they answer",
            data={"shipment": shipment.pk, "status": shipment.status},
            user=user,
            source=source,
        )
        provider_event_emit(
            shipment=shipment,
            event_type=SHIPMENT_CANCELLED,
            key=f"{shipment.pk}-cancelled",
            extra={"reason": reason[:200]},
        )
        asked.append(shipment)
    return asked


def shipment_intercept_resolve(
    *,
    shipment: Shipment,
    intercepted: bool,
    user: AbstractBaseUser | None = None,
    source: str = EventSource.PROVIDER,
) -> bool:
    """Record the provider's answer to an intercept request (`shipment.cancelled`).

    Intercepted: the parcel is cancelled (`intercept_state=confirmed`) and the units reserved
    for it in its warehouse go back to stock. Too late: `intercept_state=failed`, the units stay
    reserved (the parcel ships and commits them) and the seller gets an alert (a return will
    follow). Returns False, changing nothing, when no intercept is waiting for an answer (asked
    twice, or never asked), so a provider's retry is harmless.
    """
    from inventory.reservations import order_release

    tenant = shipment.tenant
    with tenant_context(tenant), transaction.atomic():
        order = Order.objects.select_for_update().get(pk=shipment.order_id)
        shipment = (
            Shipment.objects.select_for_update(of=("self",))
            .select_related("provider", "warehouse")
            .get(pk=shipment.pk)
        )
        if shipment.intercept_state != InterceptState.REQUESTED:
            return False
        now = timezone.now()
        who = shipment.provider or "the provider"
        if intercepted:
            Shipment.objects.filter(pk=shipment.pk).update(
                intercept_state=InterceptState.CONFIRMED,
                status=ShipmentStatus.CANCELLED,
                updated_at=now,
            )
            released = order_release(
                order=order, reason="intercepted", only_warehouse_ids=[shipment.warehouse_id]
            )
            order_event_add(
                order=order,
                kind="shipment.intercepted",
                message=f"{who} stopped parcel {shipment.reference}; {released} unit(s) back "
                "in stock",
                data={"shipment": shipment.pk, "released": released},
                user=user,
                source=source,
            )
        else:
            Shipment.objects.filter(pk=shipment.pk).update(
                intercept_state=InterceptState.FAILED, updated_at=now
            )
            order_event_add(
                order=order,
                kind="shipment.intercept_failed",
                message=f"{who} could not stop parcel {shipment.reference}: it ships anyway",
                data={"shipment": shipment.pk},
                user=user,
                source=source,
            )
            alert_raise(
                tenant=tenant,
                key=f"shipment:{shipment.pk}:intercept_failed",
                kind="provider.intercept_failed",
                title=f"Parcel {shipment.reference} of a cancelled order could not be stopped",
                message=f"{who} answered that parcel {shipment.reference} of cancelled order "
                f"{order.platform_order_id} was too late to intercept; expect a return.",
                severity=AlertSeverity.WARNING,
            )
    return True


# --- answering --------------------------------------------------------------------------------


def _claim(request: CancellationRequest, decision: str) -> bool:
    """Mark `request` as being answered with `decision`; False when it is answered already or
    another answer is in flight."""
    now = timezone.now()
    return bool(
        CancellationRequest.objects.filter(pk=request.pk, status=CancellationStatus.PENDING)
        .filter(Q(decision="") | Q(updated_at__lt=now - CLAIM_TIMEOUT))
        .update(decision=decision, error="", updated_at=now)
    )


def _resolve_platform_id(request: CancellationRequest, connector: Connector) -> str:
    """The platform's cancel id of a request first seen on the order (keyed by the order id):
    look it up in the platform's recent cancellations."""
    if request.platform_cancel_id != request.platform_order_id:
        return request.platform_cancel_id
    if request.shop.platform not in ("tiktok",):
        return request.platform_cancel_id
    since = (request.requested_at or timezone.now() - timedelta(days=3)) - timedelta(hours=1)
    for found in connector.fetch_cancellations(updated_since=since):
        if found.platform_order_id == request.platform_order_id and "PENDING" in found.status:
            return found.cancel_id
    raise CancellationError(
        f"the platform shows no pending cancellation for order {request.platform_order_id}"
    )


def _answer_on_platform(
    request: CancellationRequest, *, decision: str, reason: str, comment: str
) -> str:
    """Send the answer (no transaction open); returns the cancel id used."""
    shop = request.shop
    if decision not in PLATFORM_ANSWERS.get(shop.platform, frozenset()):
        return request.platform_cancel_id  # recorded here only (see PLATFORM_ANSWERS)
    connector = connector_for(shop)
    try:
        cancel_id = _resolve_platform_id(request, connector)
        connector.answer_cancellation(
            cancel_id=cancel_id,
            platform_order_id=request.platform_order_id,
            approve=decision == APPROVE,
            reason=(reason or comment) if decision == REJECT else comment,
        )
    finally:
        connector.http.close()
    return cancel_id


def _answer(
    *,
    request: CancellationRequest,
    decision: str,
    user: AbstractBaseUser | None,
    reason: str = "",
    comment: str = "",
    auto: bool = False,
) -> CancellationRequest:
    request = CancellationRequest.objects.select_related("shop", "order").get(pk=request.pk)
    if request.status != CancellationStatus.PENDING:
        return request  # answered already: nothing to send again
    if (
        decision == APPROVE
        and request.order is not None
        and Shipment.objects.filter(order=request.order, status__in=SHIPPED_SHIPMENTS).exists()
    ):
        message = "the order has a parcel on its way; reject the request instead"
        CancellationRequest.objects.filter(pk=request.pk).update(error=message)
        raise CancellationError(message)
    if not _claim(request, decision):
        request.refresh_from_db()
        return request
    try:
        cancel_id = _answer_on_platform(request, decision=decision, reason=reason, comment=comment)
    except (PlatformError, CancellationError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        CancellationRequest.objects.filter(pk=request.pk, decision=decision).update(
            decision="", error=str(exc)[:2000], updated_at=timezone.now()
        )
        raise CancellationError(message) from exc
    now = timezone.now()
    with transaction.atomic():
        updates = {
            "status": CancellationStatus.APPROVED
            if decision == APPROVE
            else CancellationStatus.REJECTED,
            "answered_at": now,
            "answered_by": _user(user),
            "reject_reason": reason[:100] if decision == REJECT else "",
            "comment": comment[:500],
            "auto_approved": auto,
            "error": "",
            "updated_at": now,
        }
        if cancel_id != request.platform_cancel_id and not (
            CancellationRequest.objects.filter(shop=request.shop, platform_cancel_id=cancel_id)
            .exclude(pk=request.pk)
            .exists()
        ):
            updates["platform_cancel_id"] = cancel_id
        CancellationRequest.objects.filter(pk=request.pk).update(**updates)
        if request.order is not None:
            verb = "approved" if decision == APPROVE else "rejected"
            order_event_add(
                order=request.order,
                kind=f"cancel_{verb}",
                message=f"Cancellation request {verb}"
                + (" automatically (nothing was picked yet)" if auto else "")
                + (f": {reason}" if reason else "")
                + (f" — {comment}" if comment else ""),
                data={"cancel_id": cancel_id, "reason": reason, "comment": comment},
                user=user,
            )
            if decision == APPROVE:
                order_cancel_close(order=request.order, user=user, reason=request.reason)
    request.refresh_from_db()
    return request


def cancellation_approve(
    *, request: CancellationRequest, user: AbstractBaseUser | None, auto: bool = False
) -> CancellationRequest:
    """Approve the buyer's request on the platform, then close the order here.

    Idempotent: an answered request is returned unchanged and the platform is not asked again.
    Raises CancellationError (the request stays pending, the error recorded on it) when the
    platform refuses or the order already has a parcel on its way.
    """
    return _answer(request=request, decision=APPROVE, user=user, auto=auto)


def cancellation_reject(
    *,
    request: CancellationRequest,
    user: AbstractBaseUser | None,
    reason: str,
    comment: str = "",
) -> CancellationRequest:
    """Reject the buyer's request with one of the platform's reason codes
    (`cancel_reject_reasons`) and an optional comment; idempotent like `cancellation_approve`."""
    request = CancellationRequest.objects.select_related("shop").get(pk=request.pk)
    allowed = {code for code, _ in cancel_reject_reasons(request.shop.platform)}
    if reason not in allowed:
        raise CancellationError(f"{reason!r} is not a reject reason of {request.shop.platform}")
    return _answer(request=request, decision=REJECT, user=user, reason=reason, comment=comment)


def cancellations_answer_many(
    *,
    requests,
    user: AbstractBaseUser | None,
    approve: bool,
    reason: str = "",
    comment: str = "",
) -> tuple[int, list[str]]:
    """Answer several requests one by one (each on its own; one refusal does not stop the
    rest); returns (how many were answered now, error messages)."""
    answered, errors = 0, []
    for request in requests:
        was_pending = request.status == CancellationStatus.PENDING
        try:
            if approve:
                result = cancellation_approve(request=request, user=user)
            else:
                result = cancellation_reject(
                    request=request, user=user, reason=reason, comment=comment
                )
        except CancellationError as exc:
            errors.append(f"order {request.platform_order_id}: {exc}")
            continue
        if was_pending and result.status != CancellationStatus.PENDING:
            answered += 1
    return answered, errors


# --- policy -----------------------------------------------------------------------------------


def cancel_auto_approve_enabled(*, tenant: Tenant) -> bool:
    value = (
        TenantOrderPolicy._base_manager.filter(tenant=tenant)
        .values_list("cancel_auto_approve", flat=True)
        .first()
    )
    return True if value is None else value


def cancellation_auto_approvable(request: CancellationRequest) -> bool:
    """Whether the policy may approve `request` with no person: its order is stored, not yet
    picked or labelled (new, on hold or ready) and no shipment got beyond pending."""
    order = request.order
    if request.status != CancellationStatus.PENDING or request.decision or order is None:
        return False
    if order.status not in AUTO_APPROVE_STATUSES:
        return False
    return not Shipment.objects.filter(order=order).exclude(status__in=UNSTARTED_SHIPMENTS).exists()


def cancellations_auto_approve(*, tenant: Tenant, request_ids: list[int] | None = None) -> int:
    """Approve the tenant's pending requests the policy allows (all, or those in
    `request_ids`); platform errors are left on the requests. Returns how many were approved."""
    if not cancel_auto_approve_enabled(tenant=tenant):
        return 0
    with tenant_context(tenant):
        pending = CancellationRequest.objects.filter(
            status=CancellationStatus.PENDING, decision="", order__isnull=False
        ).select_related("order", "shop")
        if request_ids is not None:
            pending = pending.filter(pk__in=request_ids)
        approved = 0
        for request in pending.order_by("answer_by", "pk"):
            if not cancellation_auto_approvable(request):
                continue
            try:
                cancellation_approve(request=request, user=None, auto=True)
            except CancellationError as exc:
                logger.warning("auto-approving cancellation %s failed: %s", request.pk, exc)
                continue
            except Exception:
                # One broken shop (credentials gone...) must not stop the policy for the rest.
                logger.exception("auto-approving cancellation %s failed", request.pk)
                continue
            approved += 1
    return approved


# --- arriving requests ------------------------------------------------------------------------

_PLATFORM_STATUS = (
    # (word in the platform's status, our status); first match wins.
    ("PENDING", CancellationStatus.PENDING),
    ("REQUESTED", CancellationStatus.PENDING),
    ("REJECT", CancellationStatus.REJECTED),
    ("SUCCESS", CancellationStatus.APPROVED),
    ("COMPLETE", CancellationStatus.APPROVED),
    ("APPROVED", CancellationStatus.APPROVED),
    ("CANCEL", CancellationStatus.WITHDRAWN),  # _CANCEL(LED): the request itself was dropped
)


def _status_from_platform(platform_status: str, decision: str) -> str:
    word = (platform_status or "").upper()
    for needle, status in _PLATFORM_STATUS:
        if needle in word:
            if status == CancellationStatus.APPROVED and decision != APPROVE:
                return CancellationStatus.AUTO_CANCELLED  # the platform cancelled, not us
            if status == CancellationStatus.WITHDRAWN and decision == REJECT:
                return CancellationStatus.REJECTED
            return status
    return CancellationStatus.PENDING


def cancellations_apply(*, shop: Shop, requests: list[PlatformCancellation]) -> int:
    """Upsert the platform's cancellation requests of `shop` into the inbox, link them to their
    orders, put the answer deadline on orders that have none and close orders the platform
    cancelled. Returns how many requests were created or changed. Database only: the SLA sweep
    applies the auto-approve policy (it asks the platform) within the minute."""
    from orders.sla import sla_deadlines

    by_id = {request.cancel_id: request for request in requests if request.cancel_id}
    if not by_id:
        return 0
    changed = 0
    to_close: list[int] = []
    with tenant_context(shop.tenant), transaction.atomic():
        stored = {
            row.platform_cancel_id: row
            for row in CancellationRequest.objects.select_for_update().filter(
                shop=shop,
                platform_cancel_id__in=[*by_id, *(r.platform_order_id for r in by_id.values())],
            )
        }
        orders = {
            order.platform_order_id: order
            for order in Order.objects.select_for_update()
            .filter(shop=shop, platform_order_id__in=[r.platform_order_id for r in by_id.values()])
            .order_by("pk")
        }
        for cancel_id, incoming in by_id.items():
            order = orders.get(incoming.platform_order_id)
            row = stored.get(cancel_id)
            renamed = False
            placeholder = stored.get(incoming.platform_order_id)
            if row is None and placeholder is not None:
                row = placeholder  # first seen on the order: now we know its real id
                row.platform_cancel_id = cancel_id
                renamed = True
            status = _status_from_platform(incoming.status, row.decision if row else "")
            deadline = None
            if status == CancellationStatus.PENDING:
                deadline = sla_deadlines(
                    paid_at=None,
                    placed_at=None,
                    is_presale=False,
                    ship_by_hours=shop.ship_by_hours,
                    presale_ship_by_hours=shop.presale_ship_by_hours,
                    cancel_requested_at=incoming.requested_at or timezone.now(),
                    platform_cancel_answer_by=incoming.answer_by,
                ).cancel_answer_by
            values = {
                "platform_order_id": incoming.platform_order_id,
                "platform_status": (incoming.status or "")[:60],
                "reason": (incoming.reason or "")[:500],
                "requested_at": incoming.requested_at,
                "raw": incoming.raw or {},
                "order": order,
            }
            if deadline is not None:
                values["answer_by"] = deadline
            if row is None:
                row = CancellationRequest.objects.create(
                    tenant=shop.tenant,
                    shop=shop,
                    platform_cancel_id=cancel_id,
                    status=status,
                    **values,
                )
                changed += 1
            else:
                # Our own final answer stands; a pending row follows the platform.
                if row.status == CancellationStatus.PENDING and not row.decision:
                    values["status"] = status
                elif row.status == CancellationStatus.PENDING and status in _ANSWERED_AS.get(
                    row.decision, ()
                ):
                    # Our answer reached the platform, but recording it did not happen (the
                    # worker died after the call): the platform's final status records it.
                    values.update(
                        status=status, answered_at=row.answered_at or timezone.now(), error=""
                    )
                before = {name: getattr(row, name) for name in values}
                if renamed or any(before[name] != value for name, value in values.items()):
                    for name, value in values.items():
                        setattr(row, name, value)
                    row.save()
                    changed += 1
            if order is not None and row.status in (
                CancellationStatus.APPROVED,
                CancellationStatus.AUTO_CANCELLED,
            ):
                to_close.append(order.pk)
            if order is not None and status == CancellationStatus.PENDING:
                _order_deadline_set(order=order, request=incoming, deadline=deadline)
    with tenant_context(shop.tenant):
        for order in Order.objects.filter(pk__in=to_close).exclude(status=OrderStatus.CANCELLED):
            try:
                order_cancel_close(order=order, source=EventSource.PLATFORM)
            except CancellationError as exc:
                logger.warning("closing cancelled order %s failed: %s", order.pk, exc)
    return changed


def _order_deadline_set(*, order: Order, request, deadline: datetime) -> None:
    """Put the answer deadline on an order that has none yet, with a "cancel_requested" event
    (ingest does the same when the order itself carries the request)."""
    if order.cancel_answer_by is not None:
        return
    Order.objects.filter(pk=order.pk).update(cancel_answer_by=deadline)
    order.cancel_answer_by = deadline
    order_event_add(
        order=order,
        kind="cancel_requested",
        message=f"The buyer asked to cancel ({request.reason or 'no reason given'}); "
        f"answer by {deadline:%Y-%m-%d %H:%M} UTC",
        data={"source": "poll", "cancel_id": request.cancel_id, "answer_by": deadline.isoformat()},
        source=EventSource.PLATFORM,
    )


def _cancel_id_from_order(order: Order) -> str:
    """The platform's id of the order's pending request where the order carries one (eBay),
    else the order id (Shopify and Amazon have none; TikTok's is found later)."""
    if order.shop.platform == "ebay":
        cancel = (order.raw or {}).get("cancelStatus") or {}
        for item in cancel.get("cancelRequests") or []:
            if (
                isinstance(item, dict)
                and item.get("cancelRequestState") == "REQUESTED"
                and item.get("cancelRequestId")
            ):
                return str(item["cancelRequestId"])[:100]
    return order.platform_order_id


def cancellations_from_orders(*, tenant: Tenant, order_ids: list[int] | None = None) -> int:
    """Give every open order that carries a buyer's cancellation request (`cancel_answer_by`)
    a request in the inbox, and link requests that arrived before their order. Database only;
    returns how many requests were created."""
    created = 0
    with tenant_context(tenant), transaction.atomic():
        unlinked = CancellationRequest.objects.filter(order__isnull=True)
        for request in unlinked.select_for_update().order_by("pk"):
            order = Order.objects.filter(
                shop_id=request.shop_id, platform_order_id=request.platform_order_id
            ).first()
            if order is not None:
                CancellationRequest.objects.filter(pk=request.pk).update(order=order)
        orders = (
            Order.objects.filter(cancel_answer_by__isnull=False, status__in=OPEN_STATUSES)
            .annotate(requests=Count("cancel_requests"))
            .filter(requests=0)
            .select_related("shop")
        )
        if order_ids is not None:
            orders = orders.filter(pk__any=list(order_ids))
        answer_hours = getattr(settings, "TKERP_CANCEL_ANSWER_HOURS", 48)
        for order in orders.order_by("pk"):
            cancel_id = _cancel_id_from_order(order)
            _, was_created = CancellationRequest.objects.get_or_create(
                shop=order.shop,
                platform_cancel_id=cancel_id,
                defaults={
                    "tenant": tenant,
                    "order": order,
                    "platform_order_id": order.platform_order_id,
                    "platform_status": order.platform_status[:60],
                    "answer_by": order.cancel_answer_by,
                    "requested_at": order.cancel_answer_by - timedelta(hours=answer_hours),
                    "reason": "",
                },
            )
            created += was_created
    return created


def cancellations_sweep(*, tenant: Tenant, now: datetime | None = None) -> dict[str, int]:
    """The minute sweep's part: requests for orders that carry one, the auto-approve policy,
    and one alert while pending requests near their answer deadline."""
    from orders.sla import sla_due_soon_hours
    from tkerp.alerts import alert_raise, alert_resolve
    from tkerp.models import AlertSeverity

    now = now or timezone.now()
    created = cancellations_from_orders(tenant=tenant)
    approved = cancellations_auto_approve(tenant=tenant)
    hours = sla_due_soon_hours(tenant=tenant)
    with tenant_context(tenant):
        due = CancellationRequest.objects.filter(
            status=CancellationStatus.PENDING, answer_by__lt=now + timedelta(hours=hours)
        ).count()
    if due:
        alert_raise(
            tenant=tenant,
            key=CANCEL_ANSWER_ALERT,
            kind=CANCEL_ANSWER_ALERT,
            severity=AlertSeverity.ERROR,
            title=f"{due} cancellation request{'s' if due != 1 else ''} to answer within {hours} h",
            message="Unanswered requests are cancelled by the platform when their clock runs "
            "out; answer them in the cancellation inbox.",
        )
    else:
        alert_resolve(tenant=tenant, key=CANCEL_ANSWER_ALERT)
    return {"created": created, "auto_approved": approved, "answer_due": due}
