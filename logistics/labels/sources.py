"""Which label source a parcel uses, and the source that sold a stored label."""

from __future__ import annotations

from collections.abc import Hashable

from logistics.labels.base import LabelError, LabelSource
from logistics.labels.labelapi import LabelApiSource
from logistics.labels.manual import ManualLabelSource
from logistics.labels.platform import TikTokLabelSource, order_ships_with_platform
from logistics.models import LabelAccount, Shipment
from shops.models import Shop


def _active_accounts(tenant_id: int) -> list[LabelAccount]:
    return list(
        LabelAccount._base_manager.filter(tenant_id=tenant_id, is_active=True).order_by(
            "name", "pk"
        )
    )


def label_account_for(
    shipment: Shipment, accounts: list[LabelAccount] | None = None
) -> LabelAccount | None:
    """The tenant's active label-service account covering the parcel's carrier, if any (the
    first by name when several do). `accounts`: the tenant's active accounts, if already read."""
    if shipment.service_id is None:
        return None
    code = shipment.service.carrier.code.lower()
    if accounts is None:
        accounts = _active_accounts(shipment.tenant_id)
    return next((account for account in accounts if code in account.carrier_codes), None)


def label_source_key(shipment: Shipment, accounts: list[LabelAccount] | None = None) -> Hashable:
    """Parcels with the same key share one source (one HTTP client, one rate limit)."""
    if order_ships_with_platform(shipment.order):
        return ("tiktok", shipment.order.shop_id)
    account = label_account_for(shipment, accounts)
    if account is not None:
        return ("labelapi", account.pk)
    return ("manual",)


def _build(key: Hashable) -> LabelSource:
    if key[0] == "tiktok":
        return TikTokLabelSource(shop=Shop._base_manager.get(pk=key[1]))
    if key[0] == "labelapi":
        return LabelApiSource(account=LabelAccount._base_manager.get(pk=key[1]))
    return ManualLabelSource()


def label_sources_for(shipments: list[Shipment]) -> dict[int, LabelSource]:
    """Each parcel's source by parcel id, one instance per distinct source. The caller closes
    them."""
    built: dict[Hashable, LabelSource] = {}
    chosen = {}
    accounts: dict[int, list[LabelAccount]] = {}
    for shipment in shipments:
        if shipment.tenant_id not in accounts:
            accounts[shipment.tenant_id] = _active_accounts(shipment.tenant_id)
        key = label_source_key(shipment, accounts[shipment.tenant_id])
        if key not in built:
            built[key] = _build(key)
        chosen[shipment.pk] = built[key]
    return chosen


def label_source_for(shipment: Shipment) -> LabelSource:
    """The parcel's label source: the platform's label for orders the platform ships (TikTok
    Shipping), the seller's label-service account covering the parcel's carrier, else manual
    (a label for a typed-in tracking number)."""
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
