"""Platform labels: for orders the platform ships (TikTok Shipping), the label is TikTok's.

Which orders: the platform says who ships each order. A TikTok order carries `shipping_type`
TIKTOK (TikTok Shipping: its carrier, its label) or SELLER (the seller's own carrier), so tkerp
reads that from the order as the platform sent it rather than keeping a shop setting that could
contradict it.

Buying is: ship (arrange) the package, which makes TikTok's carrier issue the tracking number;
read the package for its tracking number and carrier; fetch the shipping label document (A6,
the 4x6 size) and download it at once, because the link expires. Each step is safe to repeat:
shipping a shipped package is recognised, and the package's label is always the same one.
"""

from __future__ import annotations

import threading

from logistics.labels.base import LabelError, LabelFormat, LabelSource, PurchasedLabel
from logistics.models import Shipment, ShipmentLine
from shops.models import ShopCredentials
from shops.platforms import connector_for
from shops.platforms.base import PlatformError
from shops.platforms.http import RateLimit
from shops.platforms.tiktok import TikTokConnector

# TikTok's shipping-provider names -> our carrier codes.
PROVIDER_CARRIERS = {
    "usps": "usps",
    "ups": "ups",
    "fedex": "fedex",
    "dhl ecommerce": "dhl",
    "ontrac": "ontrac",
}


def order_ships_with_platform(order) -> bool:
    """True for orders whose platform ships them and supplies the label (TikTok Shipping)."""
    raw = order.raw if isinstance(order.raw, dict) else {}
    return order.shop.platform == "tiktok" and raw.get("shipping_type") == "TIKTOK"


def platform_package_id(shipment: Shipment) -> str:
    """The platform's package holding this parcel's lines: stored on the parcel, else read from
    the order's line items (the package their ids sit in), else the order's only package."""
    if shipment.platform_package_id:
        return shipment.platform_package_id
    raw = shipment.order.raw if isinstance(shipment.order.raw, dict) else {}
    line_ids = set()
    for line in ShipmentLine._base_manager.filter(shipment_id=shipment.pk).select_related(
        "order_line"
    ):
        line_ids.add(line.order_line.platform_line_id)
        line_ids.update(line.order_line.platform_line_ids or [])
    packages = {
        str(item.get("package_id"))
        for item in raw.get("line_items") or []
        if isinstance(item, dict) and item.get("id") in line_ids and item.get("package_id")
    }
    if len(packages) == 1:
        return packages.pop()
    listed = [str(p.get("id")) for p in raw.get("packages") or [] if isinstance(p, dict)]
    if not packages and len(listed) == 1:
        return listed[0]
    raise LabelError(
        f"parcel {shipment.reference} does not map to one TikTok package "
        f"({len(packages or listed)} found); sync the order again",
        code="no_package",
    )


class TikTokLabelSource(LabelSource):
    """Labels of packages TikTok ships, from TikTok's shipping documents."""

    name = "tiktok"

    def __init__(self, *, shop, **http_options):
        self.shop = shop
        self.http_options = http_options
        self._connector = None
        self._lock = threading.Lock()

    @property
    def connector(self):
        """The shop's connector, built on first use (a shop without credentials fails its own
        parcels with a reason, not the whole batch)."""
        with self._lock:
            if self._connector is None:
                try:
                    self._connector = connector_for(self.shop, **self.http_options)
                except ShopCredentials.DoesNotExist:
                    raise LabelError(
                        f"shop {self.shop.name} is not connected to TikTok", code="not_connected"
                    ) from None
            return self._connector

    @property
    def rate_limit(self) -> RateLimit:
        return TikTokConnector.rate_limit

    def close(self) -> None:
        if self._connector is not None:
            self._connector.http.close()

    def buy(self, *, shipment: Shipment) -> PurchasedLabel:
        package_id = platform_package_id(shipment)
        try:
            self.connector.ship_package(package_id=package_id)
            package = self.connector.package_detail(package_id=package_id)
            tracking = str(package.get("tracking_number") or "")
            if not tracking:
                raise LabelError(
                    f"TikTok has not issued a tracking number for package {package_id} yet",
                    code="no_tracking",
                    retryable=True,
                )
            url = self.connector.shipping_document_url(
                package_id=package_id, document_type="SHIPPING_LABEL", document_size="A6"
            )
            # The link expires: download it now, never store it.
            document = self.connector.download_document(url=url)
        except PlatformError as exc:
            raise LabelError(
                f"TikTok did not supply the label: {exc.message}",
                code="platform",
                retryable=exc.retryable,
            ) from exc
        provider = str(package.get("shipping_provider_name") or "")
        carrier = PROVIDER_CARRIERS.get(provider.lower(), provider.lower())
        service = shipment.service if shipment.service_id else None
        same_carrier = service is not None and service.carrier.code.lower() == carrier
        return PurchasedLabel(
            tracking_number=tracking,
            carrier_code=carrier,
            service_code=service.code if same_carrier else "",
            label_format=LabelFormat.PDF,
            label_bytes=document,
            source_label_id=package_id,
            extra={"platform_package_id": package_id, "carrier_chosen_by_platform": True},
        )

    def document(self, *, shipment: Shipment, document_type: str = "PACKING_SLIP") -> bytes:
        """Another of the package's documents (TikTok's packing slip, or label and slip), for
        printing alongside; the parcel must have shipped (been labelled) first."""
        try:
            url = self.connector.shipping_document_url(
                package_id=platform_package_id(shipment), document_type=document_type
            )
            return self.connector.download_document(url=url)
        except PlatformError as exc:
            raise LabelError(
                f"TikTok did not supply the {document_type.lower().replace('_', ' ')}: "
                f"{exc.message}",
                code="platform",
                retryable=exc.retryable,
            ) from exc
