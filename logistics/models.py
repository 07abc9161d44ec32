"""Carriers and their services, the rules that pick one, providers, and shipments (parcels)."""

import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from shops.models import Platform, Shop
from tkerp.audit import audited
from tkerp.encryption import EncryptedTextField
from tkerp.outbound import validate_outbound_url
from tkerp.search import trigram_index
from tkerp.tenancy import TenantManager, TenantOwnedModel


def validate_provider_ids(value) -> None:
    """A carrier's platform shipping-provider ids: an object of platform code to id (text or a
    whole number). The tracking write-back reads it as such for every parcel it sends."""
    if not isinstance(value, dict):
        raise ValidationError('Give an object of platform code to id, e.g. {"tiktok": "…"}.')
    for platform, provider_id in value.items():
        if platform not in Platform.values:
            raise ValidationError(
                f"{str(platform)[:40]!r} is not a platform code: use one of "
                + ", ".join(Platform.values)
                + "."
            )
        text = str(provider_id)
        if (
            isinstance(provider_id, bool)
            or not isinstance(provider_id, str | int)
            or not 0 < len(text) <= 100
            or not text.isprintable()
        ):
            raise ValidationError(f"The {platform} id must be a short id, text or a number.")


class Carrier(TenantOwnedModel):
    """A carrier the seller ships with (USPS, UPS, FedEx, DHL...)."""

    code = models.CharField(max_length=32, help_text="Short code, e.g. usps, ups, fedex.")
    name = models.CharField(max_length=100)
    tracking_url_template = models.CharField(
        max_length=255, blank=True, help_text="URL with {tracking_number} in it."
    )
    platform_provider_ids = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_provider_ids],
        help_text='Platform shipping-provider ids, e.g. {"tiktok": "…"}.',
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="carrier_unique_code")
        ]

    def __str__(self) -> str:
        return self.name


class CarrierService(TenantOwnedModel):
    """One service level of a carrier (Ground Advantage, 2nd Day Air...)."""

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="services")
    code = models.CharField(max_length=40)
    name = models.CharField(max_length=100)
    max_weight_grams = models.PositiveIntegerField(null=True, blank=True)
    domestic_only = models.BooleanField(default=True)
    accepts_po_box = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["carrier__code", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "carrier", "code"], name="carrierservice_unique_code"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.carrier.name} {self.name}"


#: A carrier rule's comma-separated conditions: what each item must be, and the form's words for
#: one that is not. A postal-code beginning may have spaces and dashes (`logistics.rules.postal_key`
#: drops them).
_LIST_CONDITIONS = (
    ("countries", re.compile(r".{2}"), "“{}” is not a two-letter ISO country code (e.g. US, CA)."),
    (
        "states",
        re.compile(r"[A-Za-z0-9]{1,3}"),
        "“{}” is not a state code (up to three letters or digits, e.g. CA, NSW); separate codes "
        "with commas.",
    ),
    (
        "postal_prefixes",
        re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]*"),
        "“{}” is not the beginning of a postal code: write its first characters (9 for every ZIP "
        "starting with 9, no * or ?), separated by commas.",
    ),
)


@audited(model_name="CarrierRuleAudit", exclude=["hit_count", "last_hit_at"])
class CarrierRule(TenantOwnedModel):
    """Ordered rule choosing a carrier service: lowest priority first, first match wins.

    Every condition left empty matches anything; ranges include both ends. A rule whose
    conditions hold but whose service cannot take the parcel (too heavy, abroad, PO box) is
    skipped, and the next rule is tried (see `logistics.rules`).
    """

    name = models.CharField(max_length=100)
    priority = models.PositiveIntegerField(default=100)
    is_active = models.BooleanField(default=True)
    shop = models.ForeignKey(
        "shops.Shop", on_delete=models.CASCADE, null=True, blank=True, related_name="carrier_rules"
    )
    platform = models.CharField(
        max_length=16, choices=Platform.choices, blank=True, help_text="Orders of any shop on it."
    )
    min_total = models.DecimalField(
        "order total from", max_digits=12, decimal_places=2, null=True, blank=True
    )
    max_total = models.DecimalField(
        "order total up to",
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Both ends included, in the order's currency: “under $10” is up to 9.99.",
    )
    min_weight_grams = models.PositiveIntegerField("parcel weight from (g)", null=True, blank=True)
    max_weight_grams = models.PositiveIntegerField(
        "parcel weight up to (g)",
        null=True,
        blank=True,
        help_text="SKU weights times quantities plus the packaging allowance (shipping policy).",
    )
    min_items = models.PositiveIntegerField("items from", null=True, blank=True)
    max_items = models.PositiveIntegerField(
        "items up to", null=True, blank=True, help_text="Units in the parcel."
    )
    countries = models.CharField(
        max_length=255, blank=True, help_text="Comma-separated ISO country codes."
    )
    states = models.CharField(max_length=500, blank=True, help_text="Comma-separated state codes.")
    postal_prefixes = models.CharField(
        "ZIP prefixes",
        max_length=500,
        blank=True,
        help_text="Comma-separated ZIP/postal code beginnings, e.g. 900,901,9021; any one matches.",
    )
    sku_codes = models.CharField(
        max_length=1000, blank=True, help_text="Comma-separated SKU codes; any one matches."
    )
    tag = models.CharField(max_length=50, blank=True, help_text="The order carries this tag.")
    service = models.ForeignKey(CarrierService, on_delete=models.PROTECT, related_name="rules")
    package_type = models.CharField(
        max_length=40,
        blank=True,
        help_text="Package the label is bought for, as the label service names it (e.g. Parcel, "
        "FlatRateEnvelope, SoftPack); blank: the service's ordinary parcel.",
    )
    # Written set-based by logistics.rules each time the rule picks parcels; never by a form.
    hit_count = models.PositiveBigIntegerField(default=0, editable=False)
    last_hit_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="carrierrule_unique_name"),
            models.CheckConstraint(
                condition=Q(min_total__isnull=True)
                | Q(max_total__isnull=True)
                | Q(min_total__lte=models.F("max_total")),
                name="carrierrule_total_range",
                violation_error_message="Minimum total must not exceed maximum total.",
            ),
            models.CheckConstraint(
                condition=Q(min_weight_grams__isnull=True)
                | Q(max_weight_grams__isnull=True)
                | Q(min_weight_grams__lte=models.F("max_weight_grams")),
                name="carrierrule_weight_range",
                violation_error_message="Minimum weight must not exceed maximum weight.",
            ),
            models.CheckConstraint(
                condition=Q(min_items__isnull=True)
                | Q(max_items__isnull=True)
                | Q(min_items__lte=models.F("max_items")),
                name="carrierrule_items_range",
                violation_error_message="Minimum items must not exceed maximum items.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.priority}: {self.name}"

    def clean(self) -> None:
        super().clean()
        errors = {}
        # A condition the rules can never match ("ca;tx", "9*") would save as easily as a good
        # one, and only a preview taking no parcels would hint at it.
        for name, pattern, message in _LIST_CONDITIONS:
            items = map(str.strip, getattr(self, name).split(","))
            bad = [item for item in items if item and not pattern.fullmatch(item)]
            if bad:
                errors[name] = message.format(bad[0])
        if self.shop_id is not None and self.platform:
            shop_platform = Shop._base_manager.filter(pk=self.shop_id).values_list(
                "platform", flat=True
            )
            if shop_platform.first() not in (None, self.platform):
                errors["platform"] = "The shop is on another platform: this rule would never match."
        if errors:
            raise ValidationError(errors)


class ShippingPolicy(TenantOwnedModel):
    """A tenant's shipping figures the carrier rules use: the packaging allowance added to the
    SKU weights of every parcel (box, filler, label).

    One allowance per tenant, not per rule or package type: the weight is what the rules test,
    so it must be known before a rule is chosen. At most one row per tenant; without one (or
    with the field blank) `TKERP_PACKAGING_ALLOWANCE_GRAMS` applies.
    """

    packaging_allowance_grams = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Grams of packaging added to every parcel's SKU weights "
        "(blank: TKERP_PACKAGING_ALLOWANCE_GRAMS).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "shipping policies"
        constraints = [
            models.UniqueConstraint(fields=["tenant"], name="shippingpolicy_unique_tenant"),
        ]

    def __str__(self) -> str:
        return "Shipping policy"


def order_file_times_parse(value: str) -> list[tuple[int, int]]:
    """`"09:00,15:00"` as sorted (hour, minute) pairs; ValueError names the bad entry."""
    times = set()
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        hour, sep, minute = part.partition(":")
        if not (sep and hour.isdigit() and minute.isdigit() and len(minute) == 2):
            raise ValueError(f"“{part}” is not a time like 09:00")
        if not (0 <= int(hour) <= 23 and 0 <= int(minute) <= 59):
            raise ValueError(f"“{part}” is not a time of day")
        times.add((int(hour), int(minute)))
    return sorted(times)


def validate_order_file_times(value: str) -> None:
    try:
        order_file_times_parse(value)
    except ValueError as exc:
        raise ValidationError(f"{exc}; write times as HH:MM separated by commas.") from None


class ProviderKind(models.TextChoices):
    THREE_PL = "3pl", "3PL warehouse"
    DROPSHIP = "dropship", "Drop-ship supplier"


@audited(
    model_name="ProviderAudit",
    # Who changed where its webhooks go, their secret (never its value), its timers, and who
    # re-enabled or tkerp disabled them; not the failure stamp every failed delivery moves.
    exclude=["webhook_failing_since"],
    secrets=["webhook_secret"],
)
class Provider(TenantOwnedModel):
    """A 3PL or drop-ship supplier that fulfils shipments through the provider API."""

    code = models.CharField(max_length=32)
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    supplier = models.ForeignKey(
        "inventory.Supplier",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="providers",
        help_text="For drop-ship providers: the supplier record they correspond to.",
    )
    contact_email = models.EmailField(blank=True)
    webhook_url = models.URLField(
        blank=True,
        validators=[validate_outbound_url],
        help_text="Where shipment events are pushed: an https URL on the public internet.",
    )
    webhook_secret = EncryptedTextField(max_length=200, blank=True)
    confirm_within_minutes = models.PositiveIntegerField(default=30)
    tracking_within_minutes = models.PositiveIntegerField(default=120)
    is_active = models.BooleanField(default=True)
    # Outbound webhooks (logistics.webhooks): since when every delivery has failed, and when
    # tkerp stopped sending after TKERP_PROVIDER_WEBHOOK_DISABLE_DAYS of that.
    webhook_failing_since = models.DateTimeField(null=True, blank=True, editable=False)
    webhook_disabled_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Webhooks stopped after failing for days; the Re-enable action resumes them.",
    )
    # Suppliers without an API (logistics.provider_files) get a file of their parcels instead.
    order_file_enabled = models.BooleanField(
        "send order files",
        default=False,
        help_text="E-mail this provider a CSV/XLSX file of its new parcels at the times below "
        "(for suppliers without an API).",
    )
    order_file_times = models.CharField(
        max_length=100,
        default="09:00,15:00",
        blank=True,
        validators=[validate_order_file_times],
        help_text="Comma-separated HH:MM times, in the tenant's timezone.",
    )

    class Meta:
        ordering = ["code"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "code"], name="provider_unique_code")
        ]

    def __str__(self) -> str:
        return self.name


class LabelProvider(models.TextChoices):
    EASYPOST = "easypost", "EasyPost"


@audited(model_name="LabelAccountAudit", exclude=["created_at", "updated_at"], secrets=["api_key"])
class LabelAccount(TenantOwnedModel):
    """The seller's own account at a multi-carrier label service, and the carriers it buys
    labels for. Parcels of those carriers get their labels here (see logistics.labels).

    There is no base URL to edit: the service's address comes from `provider`, or is the
    sandbox when `use_sandbox` is set (tests and the demo), so a tenant cannot point tkerp's
    requests at an address of its choosing. The API key is a plain field for now (to be moved to
    an encrypted field); the admin never shows it back.
    """

    name = models.CharField(max_length=100)
    provider = models.CharField(
        max_length=20, choices=LabelProvider.choices, default=LabelProvider.EASYPOST
    )
    api_key = EncryptedTextField(max_length=200, blank=True)  # tkerp.encryption: never in clear
    use_sandbox = models.BooleanField(
        default=False, help_text="Talk to tkerp's label sandbox instead of the real service."
    )
    carriers = models.CharField(
        max_length=200,
        help_text="Comma-separated carrier codes this account buys labels for, e.g. usps,ups.",
    )
    label_format = models.CharField(
        max_length=8,
        choices=[("pdf", "PDF 4x6"), ("zpl", "ZPL (thermal printer)")],
        default="pdf",
    )
    requests_per_second = models.FloatField(
        default=10.0,
        help_text="How fast tkerp may call the service (it answers 429 above its limit).",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="labelaccount_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def carrier_codes(self) -> list[str]:
        return [code.strip().lower() for code in self.carriers.split(",") if code.strip()]

    def clean(self) -> None:
        super().clean()
        codes = self.carrier_codes
        if not codes:
            raise ValidationError({"carriers": "Name at least one carrier code, e.g. usps."})
        known = set(
            Carrier._base_manager.filter(tenant_id=self.tenant_id).values_list("code", flat=True)
        )
        unknown = [code for code in codes if code not in known]
        if unknown:
            raise ValidationError(
                {"carriers": f"No carrier with code {', '.join(unknown)}; add it under Carriers."}
            )
        self.carriers = ",".join(codes)


def label_upload_to(shipment: "Shipment", filename: str) -> str:
    """Label files live under the tenant's own folder, so one tenant's files never share a path
    with another's (downloads go through the tenant-scoped admin view, not MEDIA_URL)."""
    return f"labels/{shipment.tenant_id}/{timezone.now():%Y/%m}/{filename}"


class ShipmentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    LABELLED = "labelled", "Label printed"
    SENT_TO_PROVIDER = "sent_to_provider", "Sent to provider"
    CONFIRMED = "confirmed", "Confirmed by provider"
    SHIPPED = "shipped", "Shipped"
    IN_TRANSIT = "in_transit", "In transit"
    DELIVERED = "delivered", "Delivered"
    EXCEPTION = "exception", "Exception"
    CANCELLED = "cancelled", "Cancelled"


class TrackingStatus(models.TextChoices):
    """Where a parcel is, in the label service's (EasyPost's) vocabulary; TikTok's descriptions
    are read into it (logistics.tracking_events)."""

    UNKNOWN = "unknown", "Unknown"
    PRE_TRANSIT = "pre_transit", "Label created"
    IN_TRANSIT = "in_transit", "In transit"
    OUT_FOR_DELIVERY = "out_for_delivery", "Out for delivery"
    AVAILABLE_FOR_PICKUP = "available_for_pickup", "Available for pickup"
    DELIVERED = "delivered", "Delivered"
    FAILURE = "failure", "Delivery failed"
    RETURN_TO_SENDER = "return_to_sender", "Returned to sender"


class TrackingException(models.TextChoices):
    """What is wrong with a parcel on its way (logistics.tracking_events.tracking_exceptions_mark);
    each kind is an alert while any parcel has it."""

    NONE = "", "None"
    NO_SCAN = "no_scan", "Labelled, no carrier scan"
    STALLED = "stalled", "No news for too long"
    DELIVERY_FAILED = "delivery_failed", "Delivery failed"
    RETURNED = "returned", "Returned to sender"


class InterceptState(models.TextChoices):
    NONE = "", "None"
    REQUESTED = "requested", "Intercept requested"
    CONFIRMED = "confirmed", "Intercepted"
    FAILED = "failed", "Too late to intercept"


#: Label sources with nothing to refund when their parcel is cancelled (logistics.labels
#: .cancelled): a manual label costs nothing and is only drawn by tkerp, and TikTok Shipping's
#: label is the platform's, cancelled with the order's package (its package status CANCELLED)
#: and not charged unused. Asking a person to void those, one alert a cancelled order, would
#: bury the alerts that matter during a spike.
LABEL_SOURCES_NOTHING_TO_REFUND = ["", "manual", "tiktok"]


class LabelRefund(models.TextChoices):
    """What became of the bought label of a parcel cancelled before it shipped
    (logistics.labels.cancelled): asked for once, the outcome kept so it is never asked twice."""

    NONE = "", "Not asked"
    ASKING = "asking", "Refund being asked for"
    REFUNDED = "refunded", "Refunded"
    REFUSED = "refused", "Refund refused: void by hand"
    BY_HAND = "by_hand", "Not voided here: void by hand"


class Shipment(TenantOwnedModel):
    """One parcel of an order, leaving one warehouse with one carrier service."""

    order = models.ForeignKey("orders.Order", on_delete=models.CASCADE, related_name="shipments")
    reference = models.CharField(max_length=40, help_text="Our parcel reference.")
    warehouse = models.ForeignKey(
        "inventory.Warehouse", on_delete=models.PROTECT, related_name="shipments"
    )
    service = models.ForeignKey(
        CarrierService, on_delete=models.PROTECT, null=True, blank=True, related_name="shipments"
    )
    provider = models.ForeignKey(
        Provider, on_delete=models.PROTECT, null=True, blank=True, related_name="shipments"
    )
    status = models.CharField(
        max_length=20, choices=ShipmentStatus.choices, default=ShipmentStatus.PENDING, db_index=True
    )
    tracking_number = models.CharField(max_length=64, blank=True)
    # The carrier the tracking number belongs to: set with the number (logistics.tracking), from
    # the parcel's service when it has one. A number is unique per tenant and carrier.
    carrier = models.ForeignKey(
        Carrier, on_delete=models.PROTECT, null=True, blank=True, related_name="shipments"
    )
    label_file = models.FileField(upload_to=label_upload_to, blank=True)
    label_format = models.CharField(max_length=8, blank=True, help_text="pdf or zpl.")
    label_source = models.CharField(
        max_length=20, blank=True, help_text="Where the label came from: labelapi, tiktok, manual."
    )
    label_account = models.ForeignKey(
        LabelAccount,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="shipments",
        help_text="The label-service account that sold the label (a void goes back to it).",
    )
    source_label_id = models.CharField(
        max_length=100, blank=True, help_text="The source's id of the label (to void it)."
    )
    labelled_at = models.DateTimeField(null=True, blank=True)
    label_voids = models.PositiveIntegerField(
        default=0,
        editable=False,
        help_text="Labels voided so far; part of the idempotency key, so a re-buy after a void "
        "buys a new label instead of getting the voided one back.",
    )
    # The label service's purchase in flight: the exact body sent under the idempotency key
    # (logistics.labels.labelapi). A worker that stops after the service sold the label but before
    # it was stored leaves both here, so a retry for an order changed meanwhile (another body
    # under the same key, which the service refuses) can ask again with what was sent, get that
    # label back and void it. Cleared once a label is stored or voided (it holds the recipient).
    label_request_key = models.CharField(max_length=100, blank=True, editable=False)
    label_request = models.TextField(blank=True, editable=False)
    # The refund of the label of a parcel cancelled before it shipped (logistics.labels
    # .cancelled): `asking` while a sweep asks (since `label_refund_at`; a sweep stopped halfway
    # leaves it, and it is taken again once that is old), then the outcome, kept so the refund
    # is never asked twice (`none` with a time: last asked then, and the source did not answer).
    # The label itself stays on the parcel, as the record of what it had.
    label_refund = models.CharField(
        max_length=12,
        choices=LabelRefund.choices,
        default=LabelRefund.NONE,
        blank=True,
        editable=False,
    )
    label_refund_at = models.DateTimeField(null=True, blank=True, editable=False)
    weight_grams = models.PositiveIntegerField(default=0)
    # Carrier rules (logistics.rules): the rule that chose `service`, the package it chose, when
    # the rules last ran on this parcel, and the rules passed over because their service did not
    # fit it ([{"rule_id", "rule", "reason"}, ...]).
    carrier_rule = models.ForeignKey(
        CarrierRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="shipments"
    )
    package_type = models.CharField(max_length=40, blank=True)
    rules_applied_at = models.DateTimeField(null=True, blank=True)
    rule_skips = models.JSONField(default=list, blank=True, editable=False)
    shipping_cost = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    platform_package_id = models.CharField(max_length=100, blank=True)
    shipped_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # The provider flow (the provider API, its webhooks, timers and scorecards): when the parcel
    # reached its provider, when the provider accepted or rejected it, and a cancellation
    # intercept asked of a provider that already has the parcel.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    rejected_at = models.DateTimeField(null=True, blank=True)
    reject_reason = models.CharField(max_length=500, blank=True)
    intercept_state = models.CharField(
        max_length=12, choices=InterceptState.choices, default=InterceptState.NONE, blank=True
    )
    # Tracking events (logistics.tracking_events): the source's tracker, the latest status,
    # the first carrier scan, the latest event, when the parcel was last polled, and what is
    # wrong with it. Written only by that module.
    tracker_id = models.CharField(
        max_length=100, blank=True, editable=False, help_text="The tracking source's tracker id."
    )
    tracking_status = models.CharField(
        max_length=24, choices=TrackingStatus.choices, blank=True, editable=False
    )
    first_scan_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_event_at = models.DateTimeField(null=True, blank=True, editable=False)
    tracking_polled_at = models.DateTimeField(null=True, blank=True, editable=False)
    tracking_poll_error = models.CharField(max_length=300, blank=True, editable=False)
    tracking_exception = models.CharField(
        max_length=20, choices=TrackingException.choices, blank=True, default="", editable=False
    )
    tracking_exception_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "reference"], name="shipment_unique_reference"
            ),
            models.UniqueConstraint(
                fields=["tenant", "carrier", "tracking_number"],
                condition=~Q(tracking_number="") & Q(carrier__isnull=False),
                name="shipment_unique_tracking",
                violation_error_message="This tracking number is already on another parcel of "
                "that carrier.",
            ),
        ]
        # The shipment and order lists' search boxes (tkerp.search) find parcels by these.
        indexes = [
            trigram_index(table="shipment", field="reference"),
            trigram_index(table="shipment", field="tracking_number"),
            # The tracking poll's selection (parcels on their way, least recently polled first)
            # and the parcel list's exception filter.
            models.Index(
                fields=["tenant", "delivered_at", "tracking_polled_at"],
                name="shipment_tracking_poll",
            ),
            models.Index(fields=["tenant", "tracking_exception"], name="shipment_tracking_exc"),
            # The sweep of purchases left on parcels no longer bought (logistics.labels
            # .left_behind): the few parcels holding a recorded purchase.
            models.Index(
                fields=["tenant", "status"],
                condition=~Q(label_request_key=""),
                name="shipment_label_request",
            ),
            # The sweep's refunds of the labels of cancelled parcels (logistics.labels
            # .cancelled): the few cancelled parcels holding a bought label not yet settled.
            models.Index(
                fields=["tenant"],
                condition=Q(status="cancelled", label_refund__in=["", "asking"])
                & ~Q(label_source__in=LABEL_SOURCES_NOTHING_TO_REFUND),
                name="shipment_label_refund_due",
            ),
            # The provider API's poll: a provider's parcels by warehouse, oldest change first.
            models.Index(
                fields=["tenant", "warehouse", "updated_at", "id"],
                name="shipment_warehouse_updated",
            ),
        ]

    def __str__(self) -> str:
        return self.reference


class TrackingEvent(TenantOwnedModel):
    """One carrier scan of a parcel, as its tracking source reported it. Stored once: the
    source and the event's own time and words make `event_key`, unique per parcel, so polling
    again adds only what is new."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="tracking_events")
    source = models.CharField(max_length=20, help_text="labelapi or tiktok.")
    event_key = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    status = models.CharField(max_length=24, choices=TrackingStatus.choices)
    message = models.CharField(max_length=300, blank=True)
    location = models.CharField(max_length=120, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["shipment", "occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shipment", "event_key"], name="trackingevent_unique_key"
            ),
        ]
        indexes = [
            models.Index(
                fields=["tenant", "shipment", "occurred_at"], name="trackingevent_shipment_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M} {self.get_status_display()}"


class TrackingPushState(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    SENDING = "sending", "Being sent"
    SENT = "sent", "Platform has it"
    RETRYING = "retrying", "Failed, will retry"
    REJECTED = "rejected", "Platform rejected the number"
    BLOCKED = "blocked", "Held: the shop's write-back is stopped"
    FAILED = "failed", "Gave up (see the last error)"


class TrackingPush(TenantOwnedModel):
    """The tracking outbox: one row per parcel whose accepted tracking number its order's
    platform must be told (logistics.outbox). `number` is what the platform should have;
    `sent_number` what it accepted last, so a changed number goes out as an update call.

    A row is claimed (state `sending`, `lease_until`, a `lease_token` of the run) and its attempt
    counted in a committed transaction before any call, so a worker that dies after posting
    leaves a row whose next run asks the platform first instead of posting twice. The claim is
    the run's only while its token is on the row: it is renewed before each call, and the
    call's outcome is written only under it (a run that outlived its lease writes nothing).
    """

    shipment = models.OneToOneField(
        Shipment, on_delete=models.CASCADE, related_name="tracking_push"
    )
    shop = models.ForeignKey("shops.Shop", on_delete=models.CASCADE, related_name="+")
    number = models.CharField(max_length=64)
    carrier_code = models.CharField(max_length=32)
    sent_number = models.CharField(max_length=64, blank=True)
    # The number the last call was made for (set before it): when it is neither `number` nor
    # `sent_number`, a run that died may have posted it before the number was corrected.
    sending_number = models.CharField(max_length=64, blank=True, editable=False)
    state = models.CharField(
        max_length=10, choices=TrackingPushState.choices, default=TrackingPushState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    due_at = models.DateTimeField(null=True, blank=True, help_text="Next try; blank: not due.")
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    last_error = models.CharField(max_length=500, blank=True)
    source = models.CharField(max_length=20, blank=True, help_text="Door the number came by.")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "shop", "state", "due_at"], name="trackingpush_due"),
        ]

    def __str__(self) -> str:
        return f"{self.number} ({self.get_state_display()})"


class TrackingAttemptResult(models.TextChoices):
    SENT = "sent", "Sent"
    ALREADY = "already", "Platform already had it"
    REJECTED = "rejected", "Rejected as invalid"
    FAILED = "failed", "Failed"
    ERROR = "error", "Error (not retried)"


class TrackingPushAttempt(TenantOwnedModel):
    """One call tkerp made to write a parcel's tracking number back to its platform: what was
    sent, how it went, how long it took. Written by the outbox only; read-only in the admin."""

    push = models.ForeignKey(TrackingPush, on_delete=models.CASCADE, related_name="attempts_made")
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="+")
    shop = models.ForeignKey("shops.Shop", on_delete=models.CASCADE, related_name="+")
    platform = models.CharField(max_length=16)
    number = models.CharField(max_length=64)
    call = models.CharField(max_length=10, help_text="ship, update or check.")
    result = models.CharField(max_length=10, choices=TrackingAttemptResult.choices)
    error = models.CharField(max_length=500, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["tenant", "shop", "-created_at"], name="trackingattempt_shop"),
        ]

    def __str__(self) -> str:
        return f"{self.platform} {self.number}: {self.result}"


class ShipmentLine(TenantOwnedModel):
    """How many units of an order line travel in a shipment."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="lines")
    order_line = models.ForeignKey(
        "orders.OrderLine", on_delete=models.CASCADE, related_name="shipment_lines"
    )
    quantity = models.PositiveIntegerField(default=1)

    class Meta:
        ordering = ["shipment", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shipment", "order_line"], name="shipmentline_unique_line"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x line {self.order_line_id}"


# --- Label batches (logistics/batches.py): one click prints many parcels ----------------------


class LabelBatchStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"  # the job itself broke (not a parcel): see `error`


class LabelBatchLayout(models.TextChoices):
    MERGED = "merged", "One PDF: label then packing slip per parcel"
    SEPARATE = "separate", "Two PDFs: labels, and pick list with packing slips"


def label_batch_upload_to(batch: "LabelBatch", filename: str) -> str:
    """A batch's documents live under its tenant's folder and its own (downloads go through the
    tenant-scoped admin view, never MEDIA_URL)."""
    return f"label_batches/{batch.tenant_id}/{batch.pk}/{filename}"


class LabelBatch(TenantOwnedModel):
    """One print run: buy or fetch the label of every parcel in it, then render the pick list,
    packing slips and labels into one PDF (or two) in pick-path order.

    Runs in the background (`logistics.tasks.run_label_batch`) and is safe to run again: parcels
    already labelled are never bought twice, and a run that died half way resumes where it was.
    The lease (`lease_token`, `lease_until`) keeps two workers from running the same batch.
    """

    shop = models.ForeignKey(
        "shops.Shop",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="label_batches",
        help_text="The shop whose ready parcels were taken (blank: parcels picked by hand).",
    )
    due_before = models.DateTimeField(
        null=True, blank=True, help_text="Only parcels whose order ships by this time."
    )
    layout = models.CharField(
        max_length=10, choices=LabelBatchLayout.choices, default=LabelBatchLayout.MERGED
    )
    status = models.CharField(
        max_length=10, choices=LabelBatchStatus.choices, default=LabelBatchStatus.QUEUED
    )
    render_only = models.BooleanField(
        default=False, help_text="The next run re-renders the PDF without buying (reprint)."
    )
    error = models.CharField(max_length=500, blank=True, help_text="Why the job itself failed.")
    runs = models.PositiveIntegerField(default=0, help_text="How many times the job started.")
    pages = models.PositiveIntegerField(default=0)
    document = models.FileField(upload_to=label_batch_upload_to, blank=True, max_length=200)
    slips_document = models.FileField(upload_to=label_batch_upload_to, blank=True, max_length=200)
    zpl_document = models.FileField(
        upload_to=label_batch_upload_to,
        blank=True,
        max_length=200,
        help_text="The batch's ZPL labels (for a thermal printer), when its source sold ZPL.",
    )
    timings = models.JSONField(
        default=dict, blank=True, help_text="Seconds each stage of the last run took."
    )
    lease_token = models.CharField(max_length=32, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "label batches"
        indexes = [
            models.Index(
                fields=["tenant", "status", "-created_at"], name="labelbatch_tenant_status"
            ),
        ]

    def __str__(self) -> str:
        return f"Label batch {self.pk}"

    @property
    def is_live(self) -> bool:
        return self.status in (LabelBatchStatus.QUEUED, LabelBatchStatus.RUNNING)

    @property
    def is_stalled(self) -> bool:
        """Running under a lease that ran out: its worker died, and a retry resumes it."""
        return self.status == LabelBatchStatus.RUNNING and (
            self.lease_until is None or self.lease_until < timezone.now()
        )


class LabelBatchItemStatus(models.TextChoices):
    PENDING = "pending", "Waiting for its label"
    LABELLED = "labelled", "Labelled"
    FAILED = "failed", "Failed"


class LabelBatchItem(TenantOwnedModel):
    """One parcel of a label batch: where it sits in the pick path and how its label went.

    `live` is true while the batch may still print the parcel; the partial unique constraint
    makes a parcel belong to at most one live batch, so two people starting batches over the same
    parcels at the same moment print each parcel once (the database decides who got it).
    """

    batch = models.ForeignKey(LabelBatch, on_delete=models.CASCADE, related_name="items")
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="batch_items")
    position = models.PositiveIntegerField(help_text="Place in the pick path (0 first).")
    status = models.CharField(
        max_length=10, choices=LabelBatchItemStatus.choices, default=LabelBatchItemStatus.PENDING
    )
    live = models.BooleanField(default=True)
    error = models.CharField(max_length=500, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Buys tried for this parcel.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["batch", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shipment"],
                condition=Q(live=True),
                name="labelbatchitem_one_live_batch",
                violation_error_message="This parcel is already in a batch being printed.",
            ),
            models.UniqueConstraint(
                fields=["tenant", "batch", "shipment"], name="labelbatchitem_unique_shipment"
            ),
        ]
        indexes = [
            models.Index(fields=["tenant", "batch", "status"], name="labelbatchitem_batch_status"),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.shipment_id} ({self.status})"


# --- The provider API (logistics/api/): keys and what providers report -------------------------


class ApiKeyScope(models.TextChoices):
    READ = "read", "Read only"
    WRITE = "write", "Read and write"


class ProviderAPIKeyManager(TenantManager, BaseAPIKeyManager):
    """Scoped like every tenant-owned manager, with the key library's `create_key` (which
    hashes the key and returns it once). The API's authentication finds a key by its prefix
    before any tenant is known, through `_base_manager` (logistics.api.auth)."""


@audited(
    model_name="ProviderAPIKeyAudit",
    fields=["provider", "name", "prefix", "scope", "revoked", "expiry_date"],
)
class ProviderAPIKey(TenantOwnedModel, AbstractAPIKey):
    """A provider's key to the provider API: shown once when created, stored only as a hash
    (sha512 of the key; the first 8 characters, `prefix`, are kept in clear to find it and to
    recognise it in lists). It resolves its tenant and provider; `scope` says whether it may
    write; `revoked` and `expiry_date` end it; `last_used_at` is refreshed at most once a
    minute."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="api_keys")
    scope = models.CharField(max_length=8, choices=ApiKeyScope.choices, default=ApiKeyScope.READ)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ProviderAPIKeyManager()
    # The prefix is random and found before the tenant is known (logistics.api.auth): unique
    # across tenants by design, and it tells nothing about one (tests/test_project.py).
    globally_unique_fields = ("prefix",)

    class Meta(AbstractAPIKey.Meta):
        ordering = ["-created"]
        verbose_name = "provider API key"
        verbose_name_plural = "provider API keys"
        indexes = [models.Index(fields=["tenant", "provider"], name="providerapikey_provider")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def can_write(self) -> bool:
        return self.scope == ApiKeyScope.WRITE


class ParcelEventKind(models.TextChoices):
    PICKED = "picked", "Picked"
    PACKED = "packed", "Packed"
    EXCEPTION = "exception", "Exception"


class ParcelEvent(TenantOwnedModel):
    """Something a provider reported about one of its parcels through the API: picked, packed,
    or an exception (damaged, out of stock at the shelf...), with its note."""

    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="parcel_events")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="parcel_events")
    kind = models.CharField(max_length=16, choices=ParcelEventKind.choices)
    note = models.CharField(max_length=500, blank=True)
    occurred_at = models.DateTimeField(help_text="When it happened, as the provider says.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["shipment", "occurred_at", "id"]
        indexes = [
            models.Index(fields=["tenant", "shipment", "occurred_at"], name="parcelevent_parcel")
        ]

    def __str__(self) -> str:
        return f"{self.shipment_id}: {self.kind}"


# --- The provider flow: outbound webhooks, reminders, order files ------------------------------


class ProviderEventStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Gave up"


class ProviderEvent(TenantOwnedModel):
    """One webhook event for a provider (`shipment.created`, ...) and how its delivery went.

    `event_id` is the Standard Webhooks `webhook-id`: unique per tenant, so an event is recorded
    (and sent) once however often the code that emits it runs, and a retry or a redelivery
    carries the same id for the receiver to deduplicate. `last_error` holds our own words
    (a status code, "timed out", the policy's refusal), never the receiver's reply.
    """

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="events")
    shipment = models.ForeignKey(
        Shipment, on_delete=models.SET_NULL, null=True, blank=True, related_name="provider_events"
    )
    event_type = models.CharField(max_length=40)
    event_id = models.CharField(max_length=80)
    payload = models.JSONField(help_text="The JSON body sent (the same on every attempt).")
    status = models.CharField(
        max_length=10, choices=ProviderEventStatus.choices, default=ProviderEventStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=200, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "provider webhook delivery"
        verbose_name_plural = "provider webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "event_id"], name="providerevent_unique_id"),
        ]
        indexes = [
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status="pending"),
                name="providerevent_due",
            ),
            models.Index(fields=["tenant", "provider", "-created_at"], name="providerevent_list"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class ReminderKind(models.TextChoices):
    ACKNOWLEDGE = "acknowledge", "Not acknowledged in time"
    TRACKING = "tracking", "No tracking in time"


class ProviderReminder(TenantOwnedModel):
    """A provider was late with a parcel (acknowledgement or tracking): one row per breach, so
    the sweep reminds once (webhook `shipment.reminder` and an e-mail) however often it runs."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="reminders")
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="reminders")
    kind = models.CharField(max_length=12, choices=ReminderKind.choices)
    due_at = models.DateTimeField(help_text="When the provider should have answered.")
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_error = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "shipment", "kind"], name="providerreminder_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.shipment_id}"


def order_file_upload_to(order_file: "ProviderOrderFile", filename: str) -> str:
    """Order files live under the tenant's folder (downloads go through the tenant-scoped admin
    view, never MEDIA_URL)."""
    return f"order_files/{order_file.tenant_id}/{order_file.provider_id}/{filename}"


class OrderFileTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "On demand"


class ProviderOrderFile(TenantOwnedModel):
    """A file (CSV and XLSX) of the parcels dispatched to a supplier without an API, e-mailed
    to it. A scheduled file is unique per (provider, slot), so a rerun of a slot makes none."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="order_files")
    slot_at = models.DateTimeField(help_text="The scheduled time (or the moment, on demand).")
    trigger = models.CharField(max_length=10, choices=OrderFileTrigger.choices)
    parcels = models.PositiveIntegerField(default=0)
    csv_file = models.FileField(upload_to=order_file_upload_to, blank=True, max_length=200)
    xlsx_file = models.FileField(upload_to=order_file_upload_to, blank=True, max_length=200)
    emailed_to = models.EmailField(blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)
    email_error = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-slot_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "provider", "slot_at"],
                condition=Q(trigger="schedule"),
                name="providerorderfile_one_per_slot",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.slot_at:%Y-%m-%d %H:%M}"


class ProviderOrderFileParcel(TenantOwnedModel):
    """A parcel listed in an order file; a parcel is in one file at most (the constraint)."""

    order_file = models.ForeignKey(
        ProviderOrderFile, on_delete=models.CASCADE, related_name="file_parcels"
    )
    shipment = models.ForeignKey(Shipment, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "shipment"], name="orderfileparcel_once"),
        ]
