"""Label API sandbox: an EasyPost-shaped multi-carrier label service under /sandbox/labelapi/v2/.

It speaks the shapes recorded in docs/label-api.md: a shipment (from/to address, parcel,
options) answered with its rates across the account's carrier accounts; buying a rate, or
buying in the same call by naming `carrier` and `service` (EasyPost's "one-call buy"); the
postage label as PDF 4x6 or ZPL, served from a files URL as real documents; converting the
label (`GET .../label?file_format=ZPL`); refunds (voids); the error object
`{"error": {"code", "message", "errors": [{field, message, suggestion}]}}`; 429 with
Retry-After above the account's rate limit; injected faults (429, 500, 503, timeout) as the
marketplace sandboxes have; a configurable latency per purchase.

Idempotency: a create sent with an `Idempotency-Key` header is stored under that key; the same
key again returns the first shipment (and its label) and buys nothing, even when both arrive at
once (the second waits on the first's unique row). `purchases` on the account counts labels
really bought, so tests can prove a retried batch bought each label once. The header is the
sandbox's choice (EasyPost's reference names none; see the docs).

Tracking numbers pass their carrier's check digit (logistics.tracking_numbers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import wraps

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path, re_path
from django.utils.timezone import now as django_now
from django.views.decorators.csrf import csrf_exempt

from logistics.labels.drawing import LabelContent, label_pdf_stamped, label_zpl
from logistics.tracking_numbers import (
    fedex_ground_tracking_number,
    make_tracking_number,
    usps_impb_barcode,
)
from sandbox.base import SANDBOX_BASE_URL, injected_fault, plain_fault_response, throttled
from sandbox.models import SandboxLabelAccount, SandboxLabelShipment, SandboxTracker
from sandbox.tracking import tracker_status, tracking_history

BASE_URL = f"{SANDBOX_BASE_URL}/labelapi"
FILES_URL = f"{BASE_URL}/files/postage_label"

CARRIER_TYPES = {"USPS": "UspsAccount", "UPS": "UpsAccount", "FedEx": "FedexAccount"}
# Per service: base price, per ounce, per zone, delivery days, shown name, banner letter.
SERVICES: dict[str, dict[str, tuple[str, str, str, int, str, str]]] = {
    "USPS": {
        "GroundAdvantage": ("4.35", "0.060", "0.25", 3, "Ground Advantage", "G"),
        "Priority": ("7.42", "0.110", "0.55", 2, "Priority Mail", "P"),
        "Express": ("28.75", "0.300", "1.10", 1, "Priority Mail Express", "E"),
    },
    "UPS": {
        "Ground": ("8.90", "0.070", "0.45", 4, "Ground", "G"),
        "3DaySelect": ("12.80", "0.110", "0.70", 3, "3 Day Select", "3"),
        "2ndDayAir": ("17.40", "0.160", "0.90", 2, "2nd Day Air", "2"),
        "NextDayAir": ("31.60", "0.280", "1.60", 1, "Next Day Air", "1"),
    },
    "FedEx": {
        "FEDEX_GROUND": ("8.75", "0.070", "0.45", 4, "Ground", "G"),
        "GROUND_HOME_DELIVERY": ("9.10", "0.070", "0.45", 4, "Home Delivery", "H"),
        "FEDEX_2_DAY": ("18.20", "0.170", "0.95", 2, "2Day", "2"),
        "PRIORITY_OVERNIGHT": ("33.90", "0.300", "1.70", 1, "Priority Overnight", "1"),
    },
}
MAX_OUNCES = {"USPS": 1120, "UPS": 2400, "FedEx": 2400}  # 70 lb, 150 lb
LABEL_FORMATS = ("PDF", "ZPL")
_PO_BOX = re.compile(r"\bP\.?\s*O\.?\s*BOX\b|\bPOST OFFICE BOX\b", re.IGNORECASE)
_US_ZIP = re.compile(r"^\d{5}(-\d{4})?$")
CENT = Decimal("0.01")


# --- responses and errors ----------------------------------------------------------------------


class ApiError(Exception):
    """An error answered in EasyPost's error object."""

    def __init__(self, status: int, code: str, message: str, errors: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors or []


def error_response(status: int, code: str, message: str, errors: list | None = None):
    return JsonResponse(
        {"error": {"code": code, "message": message, "errors": errors or []}}, status=status
    )


def rate_limited(account: SandboxLabelAccount) -> HttpResponse:
    response = error_response(429, "RATE_LIMITED", "Too many requests; slow down and retry.")
    wait = 1.0 / account.rate_per_second if account.rate_per_second > 0 else 1.0
    response["Retry-After"] = str(max(1, int(wait + 0.999)))
    return response


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _field_error(field: str, message: str, code: str = "") -> dict:
    error = {"field": field, "message": message, "suggestion": None}
    if code:
        error["code"] = code
    return error


# --- the request pipeline ----------------------------------------------------------------------


@dataclass
class Call:
    account: SandboxLabelAccount
    request: HttpRequest
    body: dict


def _account(request: HttpRequest) -> SandboxLabelAccount:
    """The account of the API key: `Authorization: Bearer <key>` (the client libraries) or
    HTTP Basic with the key as user name (curl -u KEY:)."""
    header = request.headers.get("Authorization", "")
    key = ""
    if header.startswith("Bearer "):
        key = header[7:].strip()
    elif header.startswith("Basic "):
        try:
            key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            key = ""
    if not key:
        raise ApiError(401, "APIKEY.REQUIRED", "An API key is required (Authorization header).")
    account = SandboxLabelAccount.objects.filter(api_key=key).first()
    if account is None:
        raise ApiError(401, "APIKEY.INACTIVE", "This API key is invalid or inactive.")
    return account


def endpoint(*, methods: tuple[str, ...], family: str):
    """API key, injected faults, the account's rate limit (per family of calls), JSON body."""

    def decorate(func):
        @csrf_exempt
        @wraps(func)
        def view(request: HttpRequest, **kwargs) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise ApiError(405, "METHOD.NOT_ALLOWED", "Method not allowed.")
                account = _account(request)
                fault = injected_fault(account)
                if fault == "429":
                    return rate_limited(account)
                if fault in ("500", "503", "timeout"):
                    return plain_fault_response(fault)
                # Bucket keys carry a prefix: the buckets are shared with the marketplaces'.
                if throttled(account, f"labelapi:{family}"):
                    return rate_limited(account)
                body = {}
                if request.method == "POST" and request.body:
                    try:
                        body = json.loads(request.body)
                    except (ValueError, UnicodeDecodeError):
                        raise ApiError(400, "BAD_REQUEST", "The body must be JSON.") from None
                    if not isinstance(body, dict):
                        raise ApiError(400, "BAD_REQUEST", "The body must be a JSON object.")
                status, data, headers = func(Call(account, request, body), **kwargs)
            except ApiError as exc:
                return error_response(exc.status, exc.code, exc.message, exc.errors)
            response = JsonResponse(data, status=status, safe=False)
            for name, value in headers.items():
                response[name] = value
            return response

        return view

    return decorate


@csrf_exempt
def unknown_path(request: HttpRequest, **kwargs) -> HttpResponse:
    return error_response(404, "NOT_FOUND", "The requested resource could not be found.")


# --- addresses, parcels, rates ------------------------------------------------------------------


def _address(data, where: str, *, strict: bool) -> dict:
    """Validate an address; the recipient is verified strictly (house number, ZIP), as
    `verify_strict` does, which is how a bad address comes back as ADDRESS.VERIFY.FAILURE."""
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "PARAMETER.REQUIRED",
            "Missing required parameter.",
            [_field_error(where, "cannot be blank")],
        )
    errors = []
    country = str(data.get("country") or "US").upper()
    for key in ("street1", "city", "state", "zip"):
        if not str(data.get(key) or "").strip():
            errors.append(_field_error(key, f"{key} is missing", "E.ADDRESS.NOT_FOUND"))
    street = str(data.get("street1") or "")
    if strict and street and not re.search(r"\d", street):
        errors.append(_field_error("street1", "House number is missing", "E.HOUSE_NUMBER.MISSING"))
    zip_code = str(data.get("zip") or "").strip()
    if country == "US" and zip_code and not _US_ZIP.match(zip_code):
        errors.append(_field_error("zip", "Invalid ZIP code", "E.ZIP.INVALID"))
    if errors:
        if strict:
            errors.insert(0, _field_error("address", "Address not found", "E.ADDRESS.NOT_FOUND"))
        raise ApiError(422, "ADDRESS.VERIFY.FAILURE", f"Unable to verify {where}.", errors)
    return {
        "id": _new_id("adr"),
        "object": "Address",
        "name": data.get("name"),
        "company": data.get("company"),
        "street1": street,
        "street2": data.get("street2") or None,
        "city": data.get("city"),
        "state": data.get("state"),
        "zip": zip_code,
        "country": country,
        "phone": data.get("phone"),
        "email": data.get("email"),
        "mode": "test",
        "residential": None,
        "verifications": {"delivery": {"success": True, "errors": [], "details": None}}
        if strict
        else {},
    }


def _parcel(data) -> dict:
    if not isinstance(data, dict):
        raise ApiError(
            422,
            "PARAMETER.REQUIRED",
            "Missing required parameter.",
            [_field_error("parcel", "cannot be blank")],
        )
    try:
        weight = float(data.get("weight") or 0)
    except (TypeError, ValueError):
        weight = 0
    if weight <= 0:
        raise ApiError(
            422,
            "PARCEL.WEIGHT.INVALID",
            "Parcel weight must be greater than zero (ounces).",
            [_field_error("parcel.weight", "must be greater than 0")],
        )
    return {
        "id": _new_id("prcl"),
        "object": "Parcel",
        "length": data.get("length"),
        "width": data.get("width"),
        "height": data.get("height"),
        "predefined_package": data.get("predefined_package"),
        "weight": weight,
        "mode": "test",
    }


def carrier_account_id(account: SandboxLabelAccount, carrier: str) -> str:
    digest = hashlib.sha256(f"{account.account_id}:{carrier}".encode()).hexdigest()
    return f"ca_{digest[:32]}"


def _zone(from_zip: str, to_zip: str) -> int:
    """A rough postal zone from the first ZIP digits (1 local .. 9 far)."""
    try:
        return 1 + min(8, abs(int(from_zip[:1]) - int(to_zip[:1])))
    except ValueError:
        return 5


def _rates(account: SandboxLabelAccount, shipment: dict, carrier_accounts) -> tuple[list, list]:
    """Rates of every service of the allowed carrier accounts, and messages (rate errors) for
    the carriers that cannot take the parcel."""
    allowed = set(account.carriers)
    if carrier_accounts:
        wanted = {
            (item.get("id") if isinstance(item, dict) else str(item)) for item in carrier_accounts
        }
        allowed = {c for c in allowed if carrier_account_id(account, c) in wanted}
    ounces = shipment["parcel"]["weight"]
    zone = _zone(shipment["from_address"]["zip"], shipment["to_address"]["zip"])
    po_box = bool(_PO_BOX.search(shipment["to_address"]["street1"] or ""))
    rates, messages = [], []
    now = _now()
    for carrier in sorted(allowed):
        ca_id = carrier_account_id(account, carrier)
        problem = ""
        if ounces > MAX_OUNCES.get(carrier, 2400):
            problem = f"Shipment weight exceeds the {carrier} maximum."
        elif po_box and carrier != "USPS":
            problem = f"{carrier} does not deliver to PO boxes."
        if problem:
            messages.append(
                {
                    "carrier": carrier,
                    "carrier_account_id": ca_id,
                    "type": "rate_error",
                    "message": problem,
                }
            )
            continue
        for service, (base, per_oz, per_zone, days, _, _) in SERVICES.get(carrier, {}).items():
            price = (
                Decimal(base) + Decimal(per_oz) * Decimal(str(ounces)) + Decimal(per_zone) * zone
            ).quantize(CENT, ROUND_HALF_UP)
            retail = (price * Decimal("1.18")).quantize(CENT, ROUND_HALF_UP)
            rates.append(
                {
                    "id": _new_id("rate"),
                    "object": "Rate",
                    "created_at": now,
                    "updated_at": now,
                    "mode": "test",
                    "service": service,
                    "carrier": carrier,
                    "rate": str(price),
                    "currency": "USD",
                    "retail_rate": str(retail),
                    "retail_currency": "USD",
                    "list_rate": str(price),
                    "list_currency": "USD",
                    "billing_type": "easypost",
                    "delivery_days": days,
                    "delivery_date": None,
                    "delivery_date_guaranteed": False,
                    "est_delivery_days": days,
                    "shipment_id": shipment["id"],
                    "carrier_account_id": ca_id,
                }
            )
    return rates, messages


def _tracking_code(account: SandboxLabelAccount, carrier: str, service: str, serial: int) -> str:
    if carrier == "USPS":
        return make_tracking_number(carrier="usps", service=service, account="", serial=serial)
    if carrier == "UPS":
        return make_tracking_number(
            carrier="ups", service=service, account=account.ups_shipper_number, serial=serial
        )
    if service in ("FEDEX_GROUND", "GROUND_HOME_DELIVERY"):
        return fedex_ground_tracking_number(serial=serial)
    return make_tracking_number(carrier="fedex", service=service, account="", serial=serial)


def _address_lines(address: dict) -> list[str]:
    lines = [address.get("name") or "", address.get("company") or ""]
    lines += [address.get("street1") or "", address.get("street2") or ""]
    lines.append(f"{address.get('city') or ''} {address.get('state') or ''} {address['zip']}")
    return [line.strip() for line in lines if line and line.strip()]


def _label_content(shipment: dict, carrier: str, service: str, tracking: str) -> LabelContent:
    _, _, _, _, shown, letter = SERVICES[carrier][service]
    to = shipment["to_address"]
    barcode = (
        usps_impb_barcode(tracking_number=tracking, postal_code=to["zip"])
        if carrier == "USPS"
        else tracking
    )
    return LabelContent(
        carrier=carrier,
        service=shown,
        tracking_number=tracking,
        barcode_data=barcode,
        sender=_address_lines(shipment["from_address"]),
        recipient=[line.upper() for line in _address_lines(to)],
        reference=str(shipment.get("reference") or ""),
        banner=letter,
        footnote="SANDBOX LABEL - NOT FOR MAILING",
    )


def _postage_label(row: SandboxLabelShipment, now: str) -> dict:
    fmt = row.payload.get("options", {}).get("label_format", "PDF")
    pdf_url = f"{FILES_URL}/{row.label_id}.pdf" if row.label_pdf else None
    zpl_url = f"{FILES_URL}/{row.label_id}.zpl" if row.label_zpl else None
    return {
        "object": "PostageLabel",
        "id": row.label_id,
        "created_at": now,
        "updated_at": now,
        "date_advance": 0,
        "integrated_form": "none",
        "label_date": now,
        "label_resolution": 203 if fmt == "ZPL" else 300,
        "label_size": "4x6",
        "label_type": "default",
        "label_file_type": "application/zpl" if fmt == "ZPL" else "application/pdf",
        "label_url": zpl_url if fmt == "ZPL" else pdf_url,
        "label_pdf_url": pdf_url,
        "label_zpl_url": zpl_url,
        "label_epl2_url": None,
        "label_file": None,
    }


def _carrier_latency(account: SandboxLabelAccount) -> None:
    """The carrier's label call: the configured latency of a purchase. Callers wait it out
    before their database transaction, as a real service waits on the carrier without holding
    its own rows: a server thread waiting here holds no lock and no open transaction."""
    if account.purchase_latency_ms:
        time.sleep(account.purchase_latency_ms / 1000)


def _unsynchronised_commit() -> None:
    """Let this transaction commit without waiting for its WAL to reach the disk. Every
    purchase updates the account's row (counter, wallet), so purchases queue on its lock for as
    long as the holder's commit takes: with a flush to disk each, a few hundred purchases a
    second are out of reach of an ordinary disk. The sandbox's counters may lose their last
    moments in a crash of the database server; a simulation can afford that."""
    connection = transaction.get_connection()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit TO OFF")


def _purchase(account: SandboxLabelAccount, row: SandboxLabelShipment, rate: dict) -> None:
    """Buy `rate` for the shipment `row` (locked by the caller's transaction): the tracking
    number, the label, the wallet. The caller has waited out `_carrier_latency`."""
    shipment = row.payload
    carrier, service = rate["carrier"], rate["service"]
    tracking = _tracking_code(account, carrier, service, serial=row.pk)
    content = _label_content(shipment, carrier, service, tracking)
    if shipment["options"]["label_format"] == "ZPL":
        row.label_zpl = label_zpl(content)
    else:
        row.label_pdf = label_pdf_stamped(content)
    price = Decimal(rate["rate"])
    # One conditional UPDATE: the wallet never goes below zero, and the purchase is counted.
    bought = (
        SandboxLabelAccount.objects.filter(pk=account.pk)
        .filter(Q(balance__isnull=True) | Q(balance__gte=price))
        .update(purchases=F("purchases") + 1, balance=F("balance") - price)
    )
    if not bought:
        raise ApiError(
            402,
            "PAYMENT.INSUFFICIENT_FUNDS",
            "Insufficient funds in the wallet to buy this label.",
        )
    now = _now()
    row.label_id = _new_id("pl")
    row.tracking_code = tracking
    row.rate = price
    shipment.update(
        {
            "tracking_code": tracking,
            "status": "unknown",
            "updated_at": now,
            "selected_rate": rate,
            "postage_label": _postage_label(row, now),
            "tracker": _tracker_payload(
                SandboxTracker.objects.create(
                    account=account,
                    tracker_id=_new_id("trk"),
                    tracking_code=tracking,
                    carrier=carrier,
                    shipment_id=shipment["id"],
                    started_at=django_now(),
                )
            ),
            "fees": [
                {"object": "Fee", "type": "LabelFee", "amount": "0.00000", "charged": True},
                {"object": "Fee", "type": "PostageFee", "amount": f"{price}000", "charged": True},
            ],
        }
    )


def _find_rate(shipment: dict, *, carrier: str, service: str) -> dict:
    for rate in shipment["rates"]:
        if rate["service"] == service and (not carrier or rate["carrier"] == carrier):
            return rate
    offered = ", ".join(f"{r['carrier']} {r['service']}" for r in shipment["rates"]) or "none"
    raise ApiError(
        422,
        "SHIPMENT.RATE.UNAVAILABLE",
        f"No rate for {carrier or 'any carrier'} {service} on this shipment (offered: {offered}).",
        [_field_error("service", f"{service} is not available")],
    )


# --- views --------------------------------------------------------------------------------------


@endpoint(methods=("POST",), family="shipments")
def shipments(call: Call):
    """Create a shipment (its rates), or create and buy it at once when `service` is given."""
    data = call.body.get("shipment")
    if not isinstance(data, dict) or not data:
        raise ApiError(
            422,
            "PARAMETER.REQUIRED",
            "Missing required parameter.",
            [_field_error("shipment", "cannot be blank")],
        )
    key = call.request.headers.get("Idempotency-Key", "")[:255]
    request_hash = hashlib.sha256(call.request.body).hexdigest()
    options = dict(data.get("options") or {})
    label_format = str(options.get("label_format") or "PDF").upper()
    if label_format not in LABEL_FORMATS:
        raise ApiError(
            422,
            "SHIPMENT.INVALID_PARAMS",
            f"The sandbox serves PDF and ZPL labels, not {label_format}.",
            [_field_error("options.label_format", "must be PDF or ZPL")],
        )
    options.update({"label_format": label_format, "label_size": "4x6", "currency": "USD"})
    now = _now()
    shipment = {
        "id": _new_id("shp"),
        "object": "Shipment",
        "created_at": now,
        "updated_at": now,
        "mode": "test",
        "is_return": bool(data.get("is_return")),
        "reference": data.get("reference"),
        "status": "unknown",
        "tracking_code": None,
        "to_address": _address(data.get("to_address"), "to_address", strict=True),
        "from_address": _address(data.get("from_address"), "from_address", strict=False),
        "parcel": _parcel(data.get("parcel")),
        "options": options,
        "postage_label": None,
        "selected_rate": None,
        "refund_status": None,
        "tracker": None,
        "fees": [],
        "messages": [],
    }
    account = call.account
    shipment["rates"], shipment["messages"] = _rates(
        account, shipment, data.get("carrier_accounts")
    )
    service = str(data.get("service") or "")
    carrier = str(data.get("carrier") or "")
    if carrier and carrier not in account.carriers:
        raise ApiError(
            422,
            "SHIPMENT.RATE.UNAVAILABLE",
            f"This account has no {carrier} carrier account.",
            [_field_error("carrier", f"{carrier} is not enabled")],
        )
    rate = _find_rate(shipment, carrier=carrier, service=service) if service else None
    if rate is not None:
        _carrier_latency(account)
    keyed = {"idempotency_key": key} if key else {}
    try:
        # The row is inserted first, in the purchase's transaction (no savepoint around it):
        # the same key again, or at the same moment (the insert waits for the first one's
        # commit), breaks its unique constraint before anything is bought.
        with transaction.atomic():
            _unsynchronised_commit()
            row = SandboxLabelShipment.objects.create(
                account=account,
                shipment_id=shipment["id"],
                request_hash=request_hash,
                payload={},
                **keyed,
            )
            row.payload = shipment
            if rate is not None:
                _purchase(account, row, rate)
            row.save()
    except IntegrityError:
        if (
            key
            and SandboxLabelShipment.objects.filter(account=account, idempotency_key=key).exists()
        ):
            return _replay(account, key, request_hash)
        raise
    return 201, row.payload, {}


def _replay(account: SandboxLabelAccount, key: str, request_hash: str):
    """The answer to a create whose Idempotency-Key was seen before: the same request gets the
    first answer again (nothing bought), another request under that key is refused."""
    first = SandboxLabelShipment.objects.get(account=account, idempotency_key=key)
    if first.request_hash != request_hash:
        raise ApiError(
            422, "IDEMPOTENCY.KEY_REUSED", "This Idempotency-Key was used with a different request."
        )
    return 201, first.payload, {"Idempotent-Replayed": "true"}


def _locked_shipment(call: Call, shipment_id: str) -> SandboxLabelShipment:
    row = (
        SandboxLabelShipment.objects.select_for_update()
        .filter(account=call.account, shipment_id=shipment_id)
        .first()
    )
    if row is None:
        raise ApiError(404, "NOT_FOUND", "The requested resource could not be found.")
    return row


@endpoint(methods=("GET",), family="read")
def shipment_detail(call: Call, shipment_id: str):
    with transaction.atomic():
        return 200, _locked_shipment(call, shipment_id).payload, {}


@endpoint(methods=("POST",), family="shipments")
def shipment_buy(call: Call, shipment_id: str):
    """Buy one of the shipment's rates. Buying a bought shipment with the same rate again
    answers the purchase already made (the row lock makes concurrent buys wait)."""
    rate_param = call.body.get("rate")
    rate_id = rate_param.get("id") if isinstance(rate_param, dict) else rate_param
    if not rate_id:
        raise ApiError(
            422,
            "PARAMETER.REQUIRED",
            "Missing required parameter.",
            [_field_error("rate", "cannot be blank")],
        )
    with transaction.atomic():
        row = _locked_shipment(call, shipment_id)
        shipment = row.payload
        if shipment.get("selected_rate"):
            if shipment["selected_rate"]["id"] == rate_id:
                return 200, shipment, {"Idempotent-Replayed": "true"}
            raise ApiError(
                422, "SHIPMENT.POSTAGE.EXISTS", "This shipment already has postage purchased."
            )
        rate = next((r for r in shipment["rates"] if r["id"] == rate_id), None)
        if rate is None:
            raise ApiError(
                422,
                "SHIPMENT.RATE.UNAVAILABLE",
                "That rate does not belong to this shipment.",
                [_field_error("rate", "unknown rate id")],
            )
        # This shipment's row stays locked meanwhile: a second buy of it waits, then replays.
        _carrier_latency(call.account)
        _unsynchronised_commit()
        _purchase(call.account, row, rate)
        row.save()
    return 200, row.payload, {}


@endpoint(methods=("POST",), family="shipments")
def shipment_refund(call: Call, shipment_id: str):
    """Void the label and refund its postage; asking again answers the refund already made."""
    with transaction.atomic():
        row = _locked_shipment(call, shipment_id)
        shipment = row.payload
        if not shipment.get("postage_label"):
            raise ApiError(
                422,
                "SHIPMENT.REFUND.NOT_PURCHASED",
                "This shipment has no postage to refund.",
            )
        if row.refund_status:
            return 200, shipment, {}
        row.refund_status = shipment["refund_status"] = "submitted"
        shipment["updated_at"] = _now()
        SandboxLabelAccount.objects.filter(pk=call.account.pk).update(
            refunds=F("refunds") + 1, balance=F("balance") + (row.rate or 0)
        )
        row.save()
    return 200, shipment, {}


@endpoint(methods=("GET",), family="read")
def shipment_label(call: Call, shipment_id: str):
    """Convert (or add) the label format: `?file_format=PDF|ZPL`."""
    wanted = call.request.GET.get("file_format", "").upper()
    if wanted not in LABEL_FORMATS:
        raise ApiError(
            422,
            "SHIPMENT.INVALID_PARAMS",
            "file_format must be PDF or ZPL.",
            [_field_error("file_format", "must be PDF or ZPL")],
        )
    with transaction.atomic():
        row = _locked_shipment(call, shipment_id)
        shipment = row.payload
        rate = shipment.get("selected_rate")
        if not rate:
            raise ApiError(422, "SHIPMENT.POSTAGE.MISSING", "This shipment has no postage.")
        content = _label_content(shipment, rate["carrier"], rate["service"], row.tracking_code)
        if wanted == "ZPL" and not row.label_zpl:
            row.label_zpl = label_zpl(content)
        if wanted == "PDF" and not row.label_pdf:
            row.label_pdf = label_pdf_stamped(content)
        shipment["postage_label"] = {
            **_postage_label(row, shipment["postage_label"]["label_date"]),
            "updated_at": _now(),
        }
        row.save()
    return 200, shipment, {}


@endpoint(methods=("GET",), family="read")
def carrier_accounts(call: Call):
    account = call.account
    return (
        200,
        [
            {
                "id": carrier_account_id(account, carrier),
                "object": "CarrierAccount",
                "type": CARRIER_TYPES.get(carrier, f"{carrier}Account"),
                "readable": carrier,
                "description": f"{carrier} account",
                "reference": None,
                "billing_type": "carrier",
                "created_at": account.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            for carrier in account.carriers
        ],
        {},
    )


# --- trackers -----------------------------------------------------------------------------------


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tracker_payload(row: SandboxTracker) -> dict:
    """The tracker as EasyPost answers it, with the history up to now (`sandbox.tracking`)."""
    events = tracking_history(
        tracking_code=row.tracking_code, carrier=row.carrier, started_at=row.started_at
    )
    details = [
        {
            "object": "TrackingDetail",
            "message": event.message,
            "description": "",
            "status": event.status,
            "status_detail": event.status_detail,
            "datetime": _iso(event.at),
            "source": row.carrier,
            "carrier_code": "",
            "tracking_location": {
                "object": "TrackingLocation",
                "city": event.city or None,
                "state": event.state or None,
                "country": "US" if event.city else None,
                "zip": event.zip or None,
            },
        }
        for event in events
    ]
    status = tracker_status(events)
    return {
        "id": row.tracker_id,
        "object": "Tracker",
        "mode": "test",
        "tracking_code": row.tracking_code,
        "status": status,
        "status_detail": events[-1].status_detail if events else "unknown",
        "created_at": _iso(row.created or django_now()),
        "updated_at": _iso(events[-1].at) if events else _iso(row.created or django_now()),
        "signed_by": "J BUYER" if status == "delivered" else None,
        "weight": None,
        "est_delivery_date": _iso(row.started_at + timedelta(days=3)),
        "shipment_id": row.shipment_id or None,
        "carrier": row.carrier,
        "tracking_details": details,
        "carrier_detail": None,
        "public_url": f"{BASE_URL}/track/{row.tracker_id}",
        "fees": [],
    }


def _guess_carrier(code: str) -> str:
    """The carrier of a code sent without one (EasyPost detects it; the sandbox knows three)."""
    if code.upper().startswith("1Z"):
        return "UPS"
    if code.isdigit() and len(code) in (12, 15):
        return "FedEx"
    return "USPS"


@endpoint(methods=("POST",), family="trackers")
def trackers(call: Call):
    """Track a code: a new tracker, or the account's tracker of that code already (EasyPost
    keeps one tracker per code and carrier, so asking again is harmless)."""
    data = call.body.get("tracker")
    code = str(data.get("tracking_code") or "").strip() if isinstance(data, dict) else ""
    if not code:
        raise ApiError(
            422,
            "PARAMETER.REQUIRED",
            "Missing required parameter.",
            [_field_error("tracker.tracking_code", "cannot be blank")],
        )
    carrier = str(data.get("carrier") or "") or _guess_carrier(code)
    existing = SandboxTracker.objects.filter(account=call.account, tracking_code=code).first()
    if existing is not None:
        return 200, _tracker_payload(existing), {}
    label = SandboxLabelShipment.objects.filter(account=call.account, tracking_code=code).first()
    try:
        with transaction.atomic():
            row = SandboxTracker.objects.create(
                account=call.account,
                tracker_id=_new_id("trk"),
                tracking_code=code,
                carrier=carrier,
                shipment_id=label.shipment_id if label else "",
                started_at=label.created if label else django_now(),
            )
    except IntegrityError:  # the same code at the same moment: the first one's tracker
        row = SandboxTracker.objects.get(account=call.account, tracking_code=code)
        return 200, _tracker_payload(row), {}
    return 201, _tracker_payload(row), {}


@endpoint(methods=("GET",), family="read")
def tracker_detail(call: Call, tracker_id: str):
    row = SandboxTracker.objects.filter(account=call.account, tracker_id=tracker_id).first()
    if row is None:
        raise ApiError(404, "NOT_FOUND", "The requested resource could not be found.")
    return 200, _tracker_payload(row), {}


def label_file(request: HttpRequest, label_id: str, ext: str) -> HttpResponse:
    """The label document, as the service's file host serves it (unguessable URL, no key)."""
    # The document alone: not the shipment's JSON payload, which would be parsed for nothing.
    document = (
        SandboxLabelShipment.objects.filter(label_id=label_id)
        .values_list("label_pdf" if ext == "pdf" else "label_zpl", flat=True)
        .first()
    )
    if ext == "pdf" and document:
        return HttpResponse(bytes(document), content_type="application/pdf")
    if ext == "zpl" and document:
        return HttpResponse(document, content_type="application/zpl")
    return HttpResponse("not found", status=404, content_type="text/plain")


urlpatterns = [
    path("v2/shipments", shipments),
    path("v2/shipments/<str:shipment_id>", shipment_detail),
    path("v2/shipments/<str:shipment_id>/buy", shipment_buy),
    path("v2/shipments/<str:shipment_id>/refund", shipment_refund),
    path("v2/shipments/<str:shipment_id>/label", shipment_label),
    path("v2/carrier_accounts", carrier_accounts),
    path("v2/trackers", trackers),
    path("v2/trackers/<str:tracker_id>", tracker_detail),
    re_path(r"^files/postage_label/(?P<label_id>pl_[0-9a-f]{32})\.(?P<ext>pdf|zpl)$", label_file),
    re_path(r"^.*$", unknown_path),
]


# --- connecting a tenant's label account ------------------------------------------------------

# Our carrier codes -> the label service's carrier names.
CARRIER_NAMES = {"usps": "USPS", "ups": "UPS", "fedex": "FedEx"}


def sandbox_label_account_connect(
    *,
    account,
    balance: Decimal | None = None,
    rate_per_second: float | None = None,
    rate_burst: int | None = None,
    purchase_latency_ms: int | None = None,
) -> SandboxLabelAccount:
    """Open (or reuse) the sandbox account of a tenant's `LabelAccount`, with carrier accounts
    for the carriers it covers, and point the label account at it (key stored, sandbox on).
    Safe to run again: the key is kept and the settings given are applied."""
    with transaction.atomic():
        remote = SandboxLabelAccount.objects.filter(api_key=account.api_key).first()
        if remote is None or not account.api_key:
            remote = SandboxLabelAccount.objects.create(
                account_id=_new_id("user")[:37],
                name=account.name,
                api_key="EZTK" + secrets.token_hex(24),
            )
        remote.carriers = [
            CARRIER_NAMES[code] for code in account.carrier_codes if code in CARRIER_NAMES
        ]
        for name, value in (
            ("balance", balance),
            ("rate_per_second", rate_per_second),
            ("rate_burst", rate_burst),
            ("purchase_latency_ms", purchase_latency_ms),
        ):
            if value is not None:
                setattr(remote, name, value)
        remote.save()
        type(account)._base_manager.filter(pk=account.pk).update(
            api_key=remote.api_key, use_sandbox=True
        )
        account.api_key, account.use_sandbox = remote.api_key, True
    return remote
