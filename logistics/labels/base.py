"""The one interface every label source keeps, so batch printing never cares where a label is from.

Sources (one module each in this package):
- platform labels: the marketplace ships the parcel and supplies the label (TikTok Shop's
  shipping documents), for orders the platform ships;
- the multi-carrier label API: the seller's own carrier accounts, through a label service;
- manual: the tracking number is typed in or imported; there is no label to buy.

The contract:
- `buy` is idempotent per parcel: the idempotency key is `label_idempotency_key(shipment)`, sent
  to the source with every attempt, so a retried call, a re-run batch or two workers racing never
  buy a second label; asking again returns the label bought the first time.
- `buy` never runs inside a database transaction and takes no row lock: it talks to the outside
  world, which can be slow. The caller stores the result afterwards.
- Failures raise `LabelError` with a short reason fit to show a seller (never an upstream body)
  and whether retrying may help. A failure for one parcel never concerns another.
- `rate_limit` says how fast the source may be called; the batch runs buys in parallel under it.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from tkerp.outbound import scrub_reason

if TYPE_CHECKING:
    from logistics.models import Shipment
    from shops.platforms.http import RateLimit


class LabelFormat:
    PDF = "pdf"
    ZPL = "zpl"


@dataclass(frozen=True, slots=True)
class PurchasedLabel:
    """A label a source sold or supplied for one parcel."""

    tracking_number: str
    carrier_code: str  # our Carrier.code: usps, ups, fedex, dhl...
    service_code: str  # the CarrierService.code it was bought for
    label_format: str  # LabelFormat.PDF or LabelFormat.ZPL
    label_bytes: bytes  # the document, 4x6 inches (A6-compatible) unless the source differs
    cost: Decimal = Decimal("0")
    currency: str = "USD"
    source_label_id: str = ""  # the source's id for the label (to void or fetch it again)
    extra: dict = field(default_factory=dict)


class LabelError(Exception):
    """A label could not be had for one parcel: `reason` is safe to show, `retryable` says
    whether trying again later may succeed (rate limit, timeout) or not (bad address).

    A reason often quotes the service's own error text, and it is shown in admin messages and
    stored on batch items and parcels: it is scrubbed here, once (`scrub_reason`: one line,
    no URL query strings, no token-looking runs, cut short), as `PlatformError` does."""

    def __init__(self, reason: str, *, code: str = "", retryable: bool = False):
        reason = scrub_reason(reason, limit=400)
        super().__init__(reason)
        self.reason = reason
        self.code = scrub_reason(code, limit=40)
        self.retryable = retryable


def label_named(*, tracking_number: str, label_id: str) -> str:
    """A label as a person finds it at its source, in a reason: by its tracking number, which
    `scrub_reason` keeps (a source's label id, `shp_` and 32 hex digits, reads as a token to it
    and is redacted)."""
    if tracking_number:
        return f"the label with tracking number {tracking_number}"
    return f"label {label_id or '?'}"


#: Seconds one label takes its buying thread, round trip: the source's answer (a purchase waits
#: on the carrier), the label file's download and storing it. By Little's law, keeping a source
#: at its rate limit takes rate x this many requests in flight.
LABEL_ROUND_TRIP_SECONDS = 0.4


def label_buy_threads(rate_limit: RateLimit) -> int:
    """How many parcels to buy at once from a source with this rate limit: enough to keep to
    the limit while each waits out its round trip, at most `TKERP_LABEL_BUY_MAX_WORKERS` (each
    thread holds a database connection)."""
    from django.conf import settings

    wanted = math.ceil(rate_limit.per_second * LABEL_ROUND_TRIP_SECONDS)
    return max(1, min(settings.TKERP_LABEL_BUY_MAX_WORKERS, wanted))


def label_idempotency_key(shipment: Shipment) -> str:
    """The key every buy of this parcel's label is sent with: stable across retries and batches,
    unique per tenant and parcel (a re-created parcel gets a new reference, hence a new key).
    After a label is voided the key changes (`-v1`, `-v2`...): buying again must buy anew, not
    hand back the voided label."""
    key = f"tkerp-{shipment.tenant_id}-{shipment.reference}"
    if shipment.label_voids:
        key += f"-v{shipment.label_voids}"
    return key


class LabelSource(abc.ABC):
    """Buys (or fetches) labels for parcels; see the module doc for the contract."""

    #: Stored on the shipment (`Shipment.label_source`) and shown to the seller.
    name: ClassVar[str]

    @property
    @abc.abstractmethod
    def rate_limit(self) -> RateLimit:
        """How fast this source may be called."""

    @abc.abstractmethod
    def buy(self, *, shipment: Shipment) -> PurchasedLabel:
        """The parcel's label, bought once: asking again returns the same label."""

    def void(self, *, shipment: Shipment) -> None:
        """Cancel an unused label (refund); sources that cannot void raise LabelError."""
        raise LabelError(f"labels from {self.name} cannot be voided here", code="not_supported")

    def void_asked(self, *, shipment: Shipment) -> bool:
        """Whether a void of the parcel's label was asked for already (by a run stopped before
        it recorded that), so it is not asked twice. Sources that cannot tell answer False."""
        return False

    def close(self) -> None:  # noqa: B027 - a source without connections has nothing to release
        """Release connections (HTTP clients) held by the source."""
