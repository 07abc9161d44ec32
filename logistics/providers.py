"""What a fulfilment provider (3PL, drop-ship supplier) does to the parcels routed to it.

The provider API (`logistics/api/`) and the admin are thin callers of these functions. Every
function takes the provider as well as the parcel and refuses a parcel that is not at one of the
provider's warehouses, so no door can act on another provider's parcel. Writes lock the order
first (the house order: order, lines, reservations, stock), and each refusal is a
`ProviderActionError` with a stable `code` and a message a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from inventory.locking import order_lock
from inventory.models import Sku, StockLevel, Warehouse
from inventory.stock import stock_count
from logistics.models import (
    ApiKeyScope,
    Carrier,
    InterceptState,
    ParcelEvent,
    ParcelEventKind,
    Provider,
    ProviderAPIKey,
    Shipment,
    ShipmentLine,
    ShipmentStatus,
)
from logistics.routing import shipment_lines_move
from orders.events import order_event_add
from orders.holds import HoldNotAllowed, HoldReason, order_hold
from orders.models import EventSource
from tkerp.alerts import alert_raise
from tkerp.tenancy import tenant_context

# Parcels a provider may still accept, reject or ship.
OPEN_FOR_PROVIDER = (
    ShipmentStatus.PENDING,
    ShipmentStatus.LABELLED,
    ShipmentStatus.SENT_TO_PROVIDER,
    ShipmentStatus.CONFIRMED,
)


class ProviderActionError(Exception):
    """A provider's action refused; `code` is stable, `status` is the HTTP status it maps to
    (409: the parcel's state forbids it; 422: the input is well-formed but wrong), `field`
    names the input at fault, if one is."""

    def __init__(self, message: str, *, code: str, status: int = 409, field: str | None = None):
        super().__init__(message)
        self.message, self.code, self.status, self.field = message, code, status, field


# --- keys ---------------------------------------------------------------------------------------


def provider_key_create(
    *, provider: Provider, name: str, scope: str = ApiKeyScope.READ, expires_days: int | None
) -> tuple[ProviderAPIKey, str]:
    """A new API key for `provider`; returns the row and the key itself, which is never stored
    and cannot be shown again."""
    if scope not in ApiKeyScope.values:
        raise ValueError(f"scope must be one of {', '.join(ApiKeyScope.values)}")
    if expires_days is not None and expires_days <= 0:
        raise ValueError("--expires-days must be a positive number of days")
    expiry = timezone.now() + timedelta(days=expires_days) if expires_days else None
    with tenant_context(provider.tenant):
        return ProviderAPIKey.objects.create_key(
            tenant=provider.tenant,
            provider=provider,
            name=(name or f"{provider.code} key")[:50],
            scope=scope,
            expiry_date=expiry,
        )


# --- reading ------------------------------------------------------------------------------------


def provider_parcels(*, provider: Provider) -> QuerySet[Shipment]:
    """The parcels handed to the provider: of its warehouses, and dispatched (call in the
    provider's tenant scope). A parcel that dispatch holds back (its order's cancellation asked,
    the carrier rules not run yet) is not the provider's to see or act on: accepting it would
    have it packed and never dispatched (`logistics.dispatch`)."""
    return Shipment.objects.filter(warehouse__provider=provider, dispatched_at__isnull=False)


def provider_parcel_lock(*, shipment: Shipment, provider: Provider) -> Shipment:
    """Lock the parcel's order, then the parcel, re-checking it is still the provider's."""
    order_lock(order_id=shipment.order_id)
    try:
        return (
            provider_parcels(provider=provider)
            .select_for_update(of=("self",))
            .select_related("order", "service__carrier")
            .get(pk=shipment.pk)
        )
    except Shipment.DoesNotExist:
        raise ProviderActionError(
            "This parcel is no longer routed to you.", code="not_routed", status=404
        ) from None


def provider_parcel_check_open(parcel: Shipment) -> None:
    if parcel.intercept_state in (InterceptState.REQUESTED, InterceptState.CONFIRMED):
        raise ProviderActionError(
            f"Parcel {parcel.reference} is being intercepted: the buyer cancelled. Stop it and "
            "answer with POST parcels/{id}/intercept.",
            code="intercept_requested",
        )
    if parcel.rejected_at is not None:
        raise ProviderActionError(
            f"Parcel {parcel.reference} was rejected at {parcel.rejected_at:%Y-%m-%d %H:%M} UTC.",
            code="rejected",
        )
    too_late = parcel.intercept_state == InterceptState.FAILED
    if parcel.status not in OPEN_FOR_PROVIDER and not (
        too_late and parcel.status == ShipmentStatus.EXCEPTION
    ):
        raise ProviderActionError(
            f"Parcel {parcel.reference} is {parcel.get_status_display().lower()}.",
            code="not_open",
        )


# --- acknowledging ------------------------------------------------------------------------------


def shipment_acknowledge(*, shipment: Shipment, provider: Provider) -> Shipment:
    """The provider accepts the parcel: `acknowledged_at` is set (once) and the parcel is
    confirmed. Accepting again changes nothing."""
    with tenant_context(provider.tenant), transaction.atomic():
        parcel = provider_parcel_lock(shipment=shipment, provider=provider)
        if parcel.acknowledged_at is not None and parcel.rejected_at is None:
            return parcel
        provider_parcel_check_open(parcel)
        now = timezone.now()
        parcel.acknowledged_at = now
        if parcel.status in (ShipmentStatus.PENDING, ShipmentStatus.SENT_TO_PROVIDER):
            parcel.status = ShipmentStatus.CONFIRMED
        parcel.save(update_fields=["acknowledged_at", "status", "updated_at"])
        order_event_add(
            order=parcel.order,
            kind="provider.accepted",
            message=f"{provider.name} accepted parcel {parcel.reference}",
            data={"shipment": parcel.pk, "provider": provider.pk},
            source=EventSource.PROVIDER,
        )
        return parcel


def shipment_reject(*, shipment: Shipment, provider: Provider, reason: str) -> Shipment:
    """The provider refuses the parcel: it is marked rejected with the reason and the order goes
    back to the seller on hold (`provider.rejected`), its stock still reserved, for a person to
    re-route it or count the provider's stock. Rejecting again changes nothing."""
    reason = reason.strip()
    if not reason:
        raise ProviderActionError(
            "Say why you reject the parcel.", code="reason_required", status=422, field="reason"
        )
    with tenant_context(provider.tenant), transaction.atomic():
        parcel = provider_parcel_lock(shipment=shipment, provider=provider)
        if parcel.rejected_at is not None:
            return parcel
        if parcel.acknowledged_at is not None:
            raise ProviderActionError(
                f"Parcel {parcel.reference} was accepted; report a problem with an exception "
                "event instead.",
                code="already_accepted",
            )
        provider_parcel_check_open(parcel)
        parcel.rejected_at = timezone.now()
        parcel.reject_reason = reason[:500]
        parcel.save(update_fields=["rejected_at", "reject_reason", "updated_at"])
        message = f"{provider.name} rejected parcel {parcel.reference}: {reason}"
        try:
            order_hold(
                order=parcel.order,
                code=HoldReason.PROVIDER_REJECTED,
                message=message,
                source=EventSource.PROVIDER,
            )
        except HoldNotAllowed:
            # Past holding (shipped by another door, cancelled): the trail and an alert say it.
            order_event_add(
                order=parcel.order,
                kind="provider.rejected",
                message=message,
                data={"shipment": parcel.pk},
                source=EventSource.PROVIDER,
            )
        alert_raise(
            tenant=provider.tenant,
            key=f"provider:{provider.pk}:rejected:{parcel.pk}",
            kind="provider_rejected",
            title=f"{provider.name} rejected parcel {parcel.reference}",
            message=message,
        )
        return parcel


# --- shipping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShipOutcome:
    shipment: Shipment
    remainder: Shipment | None  # the parcel the lines not shipped now moved to
    units: int


def shipment_split_off(*, parcel: Shipment, line_ids: list[int]) -> Shipment | None:
    """Move every line of the locked `parcel` not in `line_ids` to a new parcel from the same
    warehouse (same service, provider and provider timestamps), so `parcel` holds exactly the
    lines that ship now. Returns the new parcel, or None when every line ships. The caller
    holds the order's lock."""
    lines = list(ShipmentLine.objects.filter(shipment=parcel).order_by("pk"))
    present = {line.pk for line in lines}
    unknown = sorted(set(line_ids) - present)
    if unknown:
        raise ProviderActionError(
            f"Line {unknown[0]} is not a line of parcel {parcel.reference}.",
            code="unknown_line",
            status=422,
            field="lines",
        )
    staying = [line.pk for line in lines if line.pk not in set(line_ids)]
    if not staying:
        return None
    return shipment_lines_move(parcel=parcel, line_ids=staying)


def tracking_carrier(*, parcel: Shipment, carrier_code: str) -> Carrier:
    """The tenant's carrier `carrier_code`, if it is the one the parcel is booked with (the number
    itself is checked by the tracking door, `logistics.tracking.shipment_tracking_accept`)."""
    code = carrier_code.strip().lower()
    carrier = Carrier.objects.filter(code=code, is_active=True).first()
    if carrier is None:
        raise ProviderActionError(
            f"Unknown carrier “{carrier_code}”; use the code the parcel's service names "
            "(service.carrier in the parcel).",
            code="unknown_carrier",
            status=422,
            field="carrier",
        )
    if parcel.service_id is not None and parcel.service.carrier_id != carrier.pk:
        raise ProviderActionError(
            f"Parcel {parcel.reference} is booked with {parcel.service}; tracking from "
            f"{carrier.name} would not match the carrier on the platform.",
            code="carrier_mismatch",
            status=422,
            field="carrier",
        )
    return carrier


# --- events -------------------------------------------------------------------------------------


def provider_event_record(
    *,
    shipment: Shipment,
    provider: Provider,
    kind: str,
    note: str = "",
    occurred_at: datetime | None = None,
) -> ParcelEvent:
    """Record that the provider picked or packed the parcel, or hit an exception with it; the
    order's trail shows it and an exception raises an alert for the seller."""
    if kind not in ParcelEventKind.values:
        raise ProviderActionError(
            f"kind must be one of {', '.join(ParcelEventKind.values)}.",
            code="invalid_kind",
            status=422,
            field="kind",
        )
    note = note.strip()
    if kind == ParcelEventKind.EXCEPTION and not note:
        raise ProviderActionError(
            "Say what went wrong in the note.", code="note_required", status=422, field="note"
        )
    with tenant_context(provider.tenant), transaction.atomic():
        parcel = provider_parcel_lock(shipment=shipment, provider=provider)
        event = ParcelEvent.objects.create(
            tenant_id=parcel.tenant_id,
            shipment=parcel,
            provider=provider,
            kind=kind,
            note=note[:500],
            occurred_at=occurred_at or timezone.now(),
        )
        Shipment.objects.filter(pk=parcel.pk).update(updated_at=timezone.now())
        label = ParcelEventKind(kind).label.lower()
        order_event_add(
            order=parcel.order,
            kind=f"provider.{kind}",
            message=f"{provider.name}: parcel {parcel.reference} {label}"
            + (f" — {note}" if note else ""),
            data={"shipment": parcel.pk, "provider_event": event.pk},
            source=EventSource.PROVIDER,
        )
        if kind == ParcelEventKind.EXCEPTION:
            alert_raise(
                tenant=provider.tenant,
                key=f"provider:{provider.pk}:exception:{parcel.pk}",
                kind="provider_exception",
                title=f"{provider.name}: a problem with parcel {parcel.reference}",
                message=note,
            )
        return event


# --- cancellation intercept ---------------------------------------------------------------------


def shipment_intercept_answer(
    *, shipment: Shipment, provider: Provider, intercepted: bool, note: str = ""
) -> Shipment:
    """The provider answers an intercept request (the buyer's cancellation was approved while
    the provider held the parcel). Intercepted: the parcel is cancelled and the order's stock is
    released (`inventory.reservations.order_release`). Too late: the parcel left, the stock
    stays where it is, and the seller is alerted to expect a return. Answering again with the
    same answer changes nothing; a different one is refused."""
    from orders.cancellations import shipment_intercept_resolve

    wanted = InterceptState.CONFIRMED if intercepted else InterceptState.FAILED
    with tenant_context(provider.tenant), transaction.atomic():
        parcel = provider_parcel_lock(shipment=shipment, provider=provider)
        if parcel.intercept_state == wanted:
            return parcel
        if parcel.intercept_state != InterceptState.REQUESTED:
            raise ProviderActionError(
                f"No intercept is waiting for parcel {parcel.reference}"
                + (
                    f" (it was answered: {parcel.get_intercept_state_display().lower()})."
                    if parcel.intercept_state
                    else "."
                ),
                code="no_intercept_requested",
            )
        # One implementation of the answer, shared with the admin's phone/e-mail actions.
        shipment_intercept_resolve(shipment=parcel, intercepted=intercepted)
        if note:
            order_event_add(
                order=parcel.order,
                kind="shipment.intercept_note",
                message=f"{provider.name} on parcel {parcel.reference}: {note}"[:500],
                data={"shipment": parcel.pk, "provider": provider.pk},
                source=EventSource.PROVIDER,
            )
        parcel.refresh_from_db()
        return parcel


# --- stock --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StockCount:
    warehouse: str
    sku: str
    on_hand: int


def provider_stock_set(*, provider: Provider, counts: list[StockCount]) -> list[StockLevel]:
    """Set the on-hand figures the provider counted in its own warehouses, all or nothing.

    Each count goes through `inventory.stock.stock_count` (a count movement, reserve-aware: a
    figure below what open orders reserved is refused). Levels are locked in (SKU, warehouse)
    order. A bad row raises `ValidationError` whose dict is keyed `counts[i].field`.
    """
    with tenant_context(provider.tenant):
        warehouses = {w.code: w for w in Warehouse.objects.filter(provider=provider)}
        skus = {s.code: s for s in Sku.objects.filter(code__in={c.sku for c in counts})}
        errors: dict[str, list[str]] = {}
        seen: set[tuple[str, str]] = set()
        resolved = []
        for index, count in enumerate(counts):
            at = f"counts[{index}]"
            warehouse, sku = warehouses.get(count.warehouse), skus.get(count.sku)
            if warehouse is None:
                errors[f"{at}.warehouse"] = [f"“{count.warehouse}” is not one of your warehouses."]
            if sku is None:
                errors[f"{at}.sku"] = [f"No SKU “{count.sku}”."]
            if (count.warehouse, count.sku) in seen:
                errors[f"{at}.sku"] = [f"{count.sku} at {count.warehouse} appears twice."]
            seen.add((count.warehouse, count.sku))
            if warehouse is not None and sku is not None:
                resolved.append((index, sku, warehouse, count.on_hand))
        if errors:
            raise ValidationError(errors)
        resolved.sort(key=lambda item: (item[1].pk, item[2].pk))
        with transaction.atomic():
            for index, sku, warehouse, on_hand in resolved:
                try:
                    stock_count(
                        sku=sku,
                        warehouse=warehouse,
                        counted=on_hand,
                        user=None,
                        reference=f"provider {provider.code}",
                        note="counted by the provider (API)",
                    )
                except ValidationError as exc:
                    messages = exc.message_dict.get("on_hand", exc.messages)
                    errors[f"counts[{index}].on_hand"] = messages
            if errors:
                # Nothing half-written: every count of the request is undone.
                transaction.set_rollback(True)
        if errors:
            raise ValidationError(errors)
        return list(
            StockLevel.objects.filter(
                warehouse__provider=provider, pk__in=_level_ids(resolved)
            ).select_related("sku", "warehouse")
        )


def _level_ids(resolved) -> list[int]:
    pairs = {(sku.pk, warehouse.pk) for _, sku, warehouse, _ in resolved}
    return [
        pk
        for pk, sku_id, warehouse_id in StockLevel.objects.filter(
            sku_id__in={p[0] for p in pairs}, warehouse_id__in={p[1] for p in pairs}
        ).values_list("pk", "sku_id", "warehouse_id")
        if (sku_id, warehouse_id) in pairs
    ]
