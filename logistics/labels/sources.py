"""Which label source a parcel uses, and the source that sold a stored label."""

from __future__ import annotations

from collections.abc import Hashable

from logistics.labels.base import LabelError, LabelSource
from logistics.labels.labelapi import LabelApiSource
from logistics.labels.manual import ManualLabelSource
from logistics.models import LabelAccount, Shipment


def label_account_for(shipment: Shipment) -> LabelAccount | None:
    """The tenant's active label-service account covering the parcel's carrier, if any (the
    first by name when several do)."""
    if shipment.service_id is None:
        return None
    code = shipment.service.carrier.code.lower()
    accounts = LabelAccount._base_manager.filter(
        tenant_id=shipment.tenant_id, is_active=True
    ).order_by("name", "pk")
    return next((account for account in accounts if code in account.carrier_codes), None)


def label_source_key(shipment: Shipment) -> Hashable:
    """Parcels with the same key share one source (one HTTP client, one rate limit)."""
    account = label_account_for(shipment)
    if account is not None:
        return ("labelapi", account.pk)
    return ("manual",)


def _build(key: Hashable) -> LabelSource:
    if key[0] == "labelapi":
        return LabelApiSource(account=LabelAccount._base_manager.get(pk=key[1]))
    return ManualLabelSource()


def label_sources_for(shipments: list[Shipment]) -> dict[int, LabelSource]:
    """Each parcel's source by parcel id, one instance per distinct source. The caller closes
    them."""
    built: dict[Hashable, LabelSource] = {}
    chosen = {}
    for shipment in shipments:
        key = label_source_key(shipment)
        if key not in built:
            built[key] = _build(key)
        chosen[shipment.pk] = built[key]
    return chosen


def label_source_for(shipment: Shipment) -> LabelSource:
    """The parcel's label source: the seller's label-service account covering the parcel's
    carrier, else manual (a label for a typed-in tracking number)."""
    return _build(label_source_key(shipment))


def stored_label_source(shipment: Shipment) -> LabelSource:
    """The source that sold the parcel's stored label (a void must go back to it, even if the
    parcel would be labelled elsewhere today)."""
    if shipment.label_source == LabelApiSource.name:
        if shipment.label_account_id is None:
            raise LabelError(
                "the label's account is unknown; void it at the service", code="no_account"
            )
        return LabelApiSource(account=LabelAccount._base_manager.get(pk=shipment.label_account_id))
    if shipment.label_source == ManualLabelSource.name:
        return ManualLabelSource()
    raise LabelError(
        f"labels from {shipment.label_source or 'an unknown source'} cannot be voided here",
        code="not_supported",
    )
