"""The multi-carrier label API (EasyPost-shaped, see docs/label-api.md) as a label source.

One purchase is one request: the shipment is created and bought in the same call by naming the
carrier and service the parcel's carrier rule chose (EasyPost's "one-call buy"; the service
rates the shipment across the account's carrier accounts and buys that service's rate). The
request carries the parcel's idempotency key, so a retry, a re-run batch or a second worker gets
the first label back. Then the label document is downloaded from the URL the answer names.

HTTP goes through `PlatformHttpClient`: the account's rate limit (a token bucket shared by every
thread of the process), retries of 429/5xx/timeouts with backoff honouring Retry-After, and the
in-process sandbox transport when the account uses the sandbox.
"""

from __future__ import annotations

import json
import math
import threading
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction

from logistics.labels.base import (
    LabelError,
    LabelFormat,
    LabelSource,
    PurchasedLabel,
    label_idempotency_key,
    label_named,
)
from logistics.models import LabelAccount, Shipment, ShipmentLine
from logistics.tracking_numbers import service_key
from shops.platforms.base import PlatformError
from shops.platforms.http import SANDBOX_HOST, PlatformHttpClient, RateLimit, json_bytes

PROVIDER_BASE_URLS = {"easypost": "https://api.easypost.com/v2"}
SANDBOX_BASE_URL = f"http://{SANDBOX_HOST}/sandbox/labelapi/v2"
GRAMS_PER_OUNCE = 28.349523125
#: The service's error code (folded) for an idempotency key sent again with another body.
KEY_REUSED = "idempotency.key_reused"

# Our carrier codes -> the service's carrier names.
CARRIERS = {"usps": "USPS", "ups": "UPS", "fedex": "FedEx", "dhl": "DHLExpress"}
# Our service codes (folded: case, spaces, "_" and "-" ignored) -> the service's names. A code
# not listed is sent as it is, so a seller may also name a service exactly as EasyPost does.
SERVICES = {
    ("usps", "groundadvantage"): "GroundAdvantage",
    ("usps", "firstclass"): "GroundAdvantage",  # First-Class Package's successor
    ("usps", "priority"): "Priority",
    ("usps", "prioritymail"): "Priority",
    ("usps", "express"): "Express",
    ("usps", "priorityexpress"): "Express",
    ("usps", "prioritymailexpress"): "Express",
    ("ups", "ground"): "Ground",
    ("ups", "3dayselect"): "3DaySelect",
    ("ups", "2nddayair"): "2ndDayAir",
    ("ups", "nextdayair"): "NextDayAir",
    ("ups", "nextdayairsaver"): "NextDayAirSaver",
    ("fedex", "ground"): "FEDEX_GROUND",
    ("fedex", "fedexground"): "FEDEX_GROUND",
    ("fedex", "homedelivery"): "GROUND_HOME_DELIVERY",
    ("fedex", "groundhomedelivery"): "GROUND_HOME_DELIVERY",
    ("fedex", "2day"): "FEDEX_2_DAY",
    ("fedex", "fedex2day"): "FEDEX_2_DAY",
    ("fedex", "expresssaver"): "FEDEX_EXPRESS_SAVER",
    ("fedex", "priorityovernight"): "PRIORITY_OVERNIGHT",
    ("fedex", "standardovernight"): "STANDARD_OVERNIGHT",
}


def label_api_service(*, carrier_code: str, service_code: str) -> tuple[str, str]:
    """(carrier, service) as the label service names them, for one of our carrier services."""
    carrier = carrier_code.lower()
    name = SERVICES.get((carrier, service_key(service_code)), service_code)
    return CARRIERS.get(carrier, carrier_code.upper()), name


def parcel_weight_grams(shipment: Shipment) -> int:
    """The parcel's weight: as recorded on it, else its SKUs' weights times quantities."""
    if shipment.weight_grams:
        return shipment.weight_grams
    return sum(
        (line.order_line.sku.weight_grams if line.order_line.sku_id else 0) * line.quantity
        # By parcel id, not through the tenant scope: a source may run in any scope.
        for line in ShipmentLine._base_manager.filter(shipment_id=shipment.pk).select_related(
            "order_line__sku"
        )
    )


def _lines(*parts: str) -> list[str]:
    return [part.strip() for part in parts if part and part.strip()]


def recipient_lines(shipment: Shipment) -> list[str]:
    order = shipment.order
    return _lines(
        order.recipient_name or order.buyer_name,
        order.address_line1,
        order.address_line2,
        f"{order.city} {order.state} {order.postal_code}",
    )


def sender_lines(shipment: Shipment) -> list[str]:
    warehouse = shipment.warehouse
    return _lines(
        warehouse.name,
        warehouse.address_line1,
        warehouse.address_line2,
        f"{warehouse.city} {warehouse.state} {warehouse.postal_code}",
    )


class LabelApiSource(LabelSource):
    """Labels bought with the seller's own label-service account (`LabelAccount`)."""

    name = "labelapi"

    def __init__(
        self,
        *,
        account: LabelAccount,
        transport: httpx.BaseTransport | None = None,
        **http_options,
    ):
        self.account = account
        base_url = SANDBOX_BASE_URL if account.use_sandbox else PROVIDER_BASE_URLS[account.provider]
        # A batch's buying threads share the source: each keeps its own connections.
        http_options.setdefault("per_thread", True)
        self.http = PlatformHttpClient(
            platform="labelapi",
            shop_key=f"labelaccount:{account.pk}",
            base_url=base_url,
            rate_limit=self.rate_limit,
            transport=transport,
            **http_options,
        )
        # Label files come from the service's file host, which the API's limit does not cover.
        self.files = PlatformHttpClient(
            platform="labelapi-files",
            shop_key=f"labelaccount:{account.pk}",
            base_url=base_url,
            rate_limit=RateLimit(per_second=200, burst=200),
            transport=transport,
            **http_options,
        )
        self._carrier_accounts: dict[str, str] | None = None
        self._lock = threading.Lock()

    @property
    def rate_limit(self) -> RateLimit:
        """The account's pace, evenly: a burst of a tenth of a second's requests at most, so
        a batch starting its threads together does not meet the service's own burst limit
        (a 429 costs the Retry-After wait, a second or more)."""
        per_second = max(0.1, float(self.account.requests_per_second))
        return RateLimit(per_second=per_second, burst=max(1, math.ceil(per_second / 10)))

    def close(self) -> None:
        self.http.close()
        self.files.close()

    # --- plumbing ---

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: dict | None = None,
        content: bytes | None = None,
        params: dict | None = None,
        idempotency_key: str = "",
    ) -> dict | list:
        """The service's JSON answer; `content` is a JSON body sent byte for byte (a purchase,
        whose idempotency key the service binds to those bytes)."""
        if self.account.use_sandbox and not settings.TKERP_SANDBOX_ENABLED:
            raise LabelError(
                "the label account points at the sandbox, which is off here", code="sandbox_off"
            )
        headers = {"Authorization": f"Bearer {self.account.api_key}"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key

        def build() -> httpx.Request:
            return self.http.client.build_request(
                method,
                self.http.url(path),
                json=json,
                content=content,
                params=params,
                headers=headers,
            )

        try:
            response = self.http.send(build)
        except PlatformError as exc:
            raise LabelError(
                f"the label service is not answering ({exc.message}); try again later",
                code="unavailable",
                retryable=True,
            ) from exc
        if response.status_code >= 300:  # redirects are not followed: an error here
            raise self._error(response)
        try:
            return response.json()
        except ValueError:
            raise LabelError(
                "the label service answered something that is not JSON", code="response"
            ) from None

    @staticmethod
    def _error(response: httpx.Response) -> LabelError:
        """The service's error object in our words; field details are kept short."""
        try:
            error = response.json()["error"]
            code = str(error.get("code") or "")
            message = str(error.get("message") or "")[:200]
            details = error.get("errors") or []
        except (ValueError, KeyError, TypeError, AttributeError):
            code, message, details = "", "", []
        fields = "; ".join(
            f"{item.get('field')}: {item.get('message')}"
            for item in details
            # Only the service's field errors are quoted, never another shape of its reply.
            if isinstance(item, dict) and item.get("field") != "address"
        )[:300]
        status = response.status_code
        if code == "ADDRESS.VERIFY.FAILURE":
            whose = "sender (warehouse)" if "from_address" in message else "recipient"
            return LabelError(
                f"the label service could not verify the {whose} address ({fields or message})",
                code="address",
            )
        if status == 401:
            return LabelError("the label service refused the account's API key", code="auth")
        if status == 402:
            return LabelError(
                "the label account has insufficient funds; add funds at the label service",
                code="funds",
            )
        if code == "SHIPMENT.RATE.UNAVAILABLE":
            return LabelError(
                f"the service is not available for this parcel: {message}", code="service"
            )
        if status == 404:
            return LabelError("the label service does not know this label", code="not_found")
        detail = f": {message}" if message else ""
        return LabelError(
            f"the label service refused the request ({code or status}){detail}",
            code=code.lower() or str(status),
        )

    def _carrier_account(self, carrier: str) -> str:
        """The id of the account's carrier account for `carrier` (listed once per source)."""
        with self._lock:
            if self._carrier_accounts is None:
                listed = self._send("GET", "/carrier_accounts")
                self._carrier_accounts = {
                    str(item.get("readable")): str(item.get("id"))
                    for item in listed
                    if isinstance(item, dict)
                }
            found = self._carrier_accounts.get(carrier)
        if not found:
            raise LabelError(
                f"the label account has no {carrier} carrier account", code="unknown_carrier"
            )
        return found

    def _download(self, url: str) -> bytes:
        parts = urlsplit(url)
        allowed = (
            parts.hostname == SANDBOX_HOST if self.account.use_sandbox else parts.scheme == "https"
        )
        if not allowed:
            raise LabelError(
                "the label service named a label file at an unexpected address", code="response"
            )

        def build() -> httpx.Request:
            return self.files.client.build_request("GET", url)

        try:
            response = self.files.send(build)
        except PlatformError as exc:
            raise LabelError(
                f"the label file could not be downloaded ({exc.message}); try again later",
                code="unavailable",
                retryable=True,
            ) from exc
        if response.status_code != 200:
            raise LabelError(
                f"the label file could not be downloaded (HTTP {response.status_code})",
                code="download",
                retryable=True,
            )
        return response.content

    def _shipment_body(self, shipment: Shipment, *, carrier: str = "", service: str = "") -> dict:
        order, warehouse = shipment.order, shipment.warehouse
        grams = parcel_weight_grams(shipment)
        if grams <= 0:
            raise LabelError(
                f"parcel {shipment.reference} has no weight: set its SKUs' weights",
                code="no_weight",
            )
        body = {
            "reference": shipment.reference,
            "to_address": {
                "name": order.recipient_name or order.buyer_name,
                "street1": order.address_line1,
                "street2": order.address_line2,
                "city": order.city,
                "state": order.state,
                "zip": order.postal_code,
                "country": order.country,
                "phone": order.recipient_phone,
            },
            "from_address": {
                "name": warehouse.name,
                "street1": warehouse.address_line1,
                "street2": warehouse.address_line2,
                "city": warehouse.city,
                "state": warehouse.state,
                "zip": warehouse.postal_code,
                "country": warehouse.country,
            },
            "parcel": {"weight": max(0.1, round(grams / GRAMS_PER_OUNCE, 1))},
            "options": {
                "label_format": self.account.label_format.upper(),
                "label_size": "4x6",
                "invoice_number": order.platform_order_id,
            },
        }
        if carrier:
            body["carrier_accounts"] = [self._carrier_account(carrier)]
            body["carrier"] = carrier
        if service:
            body["service"] = service
        return {"shipment": body}

    # --- the source ---

    def buy(self, *, shipment: Shipment) -> PurchasedLabel:
        service = shipment.service
        if service is None:
            raise LabelError(
                f"parcel {shipment.reference} has no carrier service yet; apply the carrier rules",
                code="no_service",
            )
        carrier, service_name = label_api_service(
            carrier_code=service.carrier.code, service_code=service.code
        )
        bought = self._shipment_bought(
            shipment, self._shipment_body(shipment, carrier=carrier, service=service_name)
        )
        label = bought.get("postage_label") if isinstance(bought, dict) else None
        rate = bought.get("selected_rate") if isinstance(bought, dict) else None
        if not isinstance(label, dict) or not isinstance(rate, dict) or not bought.get("id"):
            raise LabelError("the label service answered without a label", code="response")
        fmt = self.account.label_format
        url_field = "label_zpl_url" if fmt == LabelFormat.ZPL else "label_pdf_url"
        url = label.get(url_field)
        if not url:
            converted = self._send(
                "GET", f"/shipments/{bought['id']}/label", params={"file_format": fmt.upper()}
            )
            # Read as loosely as the purchase: an answer of another shape fails this parcel
            # with a reason, not with an unexpected error.
            converted = converted.get("postage_label") if isinstance(converted, dict) else None
            url = converted.get(url_field) if isinstance(converted, dict) else None
        if not url:
            raise LabelError(
                "the label service answered without a label file", code="response", retryable=True
            )
        document = self._download(str(url or ""))
        if fmt == LabelFormat.PDF and not document.startswith(b"%PDF"):
            raise LabelError("the label file is not a PDF", code="response", retryable=True)
        if fmt == LabelFormat.ZPL and b"^XA" not in document:
            raise LabelError("the label file is not ZPL", code="response", retryable=True)
        try:
            cost = Decimal(str(rate.get("rate")))
        except InvalidOperation:
            cost = Decimal("0")
        return PurchasedLabel(
            tracking_number=str(bought.get("tracking_code") or ""),
            carrier_code=service.carrier.code,
            service_code=service.code,
            label_format=fmt,
            label_bytes=document,
            cost=cost,
            currency=str(rate.get("currency") or "USD"),
            source_label_id=str(bought["id"]),
            extra={
                "label_account_id": self.account.pk,
                "carrier": rate.get("carrier"),
                "service": rate.get("service"),
            },
        )

    def rates(self, *, shipment: Shipment) -> list[dict]:
        """Rate shopping: what each service of the account's carriers would cost for the parcel
        (nothing is bought). Cheapest first: `[{carrier, service, rate, currency, days}]`."""
        answer = self._send("POST", "/shipments", json=self._shipment_body(shipment))
        rates = [
            {
                "carrier": rate.get("carrier"),
                "service": rate.get("service"),
                "rate": Decimal(str(rate.get("rate"))),
                "currency": rate.get("currency") or "USD",
                "days": rate.get("delivery_days"),
            }
            for rate in answer.get("rates") or []
            if isinstance(rate, dict)
        ]
        return sorted(rates, key=lambda rate: rate["rate"])

    # --- trackers (logistics.tracking_events polls them) ---

    def tracker(self, *, tracking_code: str, carrier_code: str, tracker_id: str = "") -> dict:
        """The service's tracker of a parcel, with its `tracking_details`: fetched by id when
        known, else created (the service keeps one tracker per code, so creating again returns
        the same one)."""
        answer = None
        if tracker_id:
            try:
                answer = self._send("GET", f"/trackers/{tracker_id}")
            except LabelError as exc:
                if exc.code != "not_found":
                    raise
                # The service forgot the tracker (they expire): make it again, below.
        if answer is None:
            carrier = CARRIERS.get(carrier_code.lower(), carrier_code.upper())
            answer = self._send(
                "POST",
                "/trackers",
                json={"tracker": {"tracking_code": tracking_code, "carrier": carrier}},
            )
        if not isinstance(answer, dict) or not isinstance(answer.get("tracking_details"), list):
            raise LabelError("the label service answered without tracking details", code="response")
        return answer

    def void(self, *, shipment: Shipment) -> None:
        if not shipment.source_label_id:
            raise LabelError("the parcel's label has no id at the label service", code="not_found")
        self._refund(shipment.source_label_id)

    def void_asked(self, *, shipment: Shipment) -> bool:
        """The service's shipment shows its refund asked for (submitted or refunded)."""
        if not shipment.source_label_id:
            return False
        return self._refund_asked(shipment.source_label_id)

    def _refund_asked(self, label_id: str) -> bool:
        answer = self._send("GET", f"/shipments/{label_id}")
        status = answer.get("refund_status") if isinstance(answer, dict) else None
        return status in ("submitted", "refunded")

    def _refund(self, label_id: str) -> None:
        answer = self._send("POST", f"/shipments/{label_id}/refund", json={})
        status = answer.get("refund_status") if isinstance(answer, dict) else None
        if status not in ("submitted", "refunded"):
            raise LabelError(
                f"the label service did not accept the refund (status {status})", code="refund"
            )

    # --- a purchase left on a parcel that is not bought again (logistics.labels.left_behind) ---

    def request_sent_here(self, *, sent: str) -> bool:
        """Whether the recorded purchase `sent` was for this account: it names one of the
        account's carrier accounts (asking another account about the key would buy there)."""
        try:
            body = json.loads(sent)["shipment"]
            carrier, wanted = str(body["carrier"]), list(body["carrier_accounts"])
        except (ValueError, KeyError, TypeError):
            return False
        try:
            return self._carrier_account(carrier) in wanted
        except LabelError as exc:
            if exc.code == "unknown_carrier":
                return False
            raise

    def purchase_left(self, *, key: str, sent: str) -> dict | None:
        """The shipment the service sold under `key` for the recorded request `sent`, or None
        when nothing was sold, found without buying: sending `sent` again would buy the label
        if that request never reached the service. So the key is tried first with a quote (the
        same request without its carrier and service: rates, nothing bought). A key the
        service has not seen goes to that quote, and the recorded request, were it still on its
        way, is refused under it rather than sold: None. A key it has seen is refused, and then
        `sent` is replayed (the label sold then, nothing bought). Raises `LabelError`
        `unknown_purchase` when the key went with some other request, or the quote is refused
        (what was sold under the key cannot be asked for), and the service's own errors."""
        try:
            body = json.loads(sent)
            quote = {
                "shipment": {
                    name: value
                    for name, value in body["shipment"].items()
                    if name not in ("carrier", "service")
                }
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LabelError(
                "the recorded request is not readable", code="unknown_purchase"
            ) from None
        try:
            # The same bytes each time: a second run's quote is replayed, not refused.
            self._send("POST", "/shipments", content=json_bytes(quote), idempotency_key=key)
        except LabelError as exc:
            if exc.code != KEY_REUSED:
                if exc.retryable or exc.code in ("auth", "sandbox_off"):
                    raise
                raise LabelError(
                    f"the label service refused a quote for the recorded request ({exc.reason})",
                    code="unknown_purchase",
                ) from exc
        else:
            return None
        try:
            answer = self._send("POST", "/shipments", content=sent.encode(), idempotency_key=key)
        except LabelError as exc:
            if exc.retryable or exc.code != KEY_REUSED:
                raise
            raise LabelError(
                "the key went with another request than the one recorded", code="unknown_purchase"
            ) from exc
        sold = isinstance(answer, dict) and isinstance(answer.get("postage_label"), dict)
        return answer if sold and answer.get("id") else None

    def purchase_left_refund(self, *, answer: dict) -> None:
        """Refund the label of `answer` (`purchase_left`'s), unless its refund was asked for
        already (by a run stopped before it recorded that): never a second refund request."""
        if answer.get("refund_status") in ("submitted", "refunded"):
            return
        try:
            self._refund(str(answer["id"]))
        except LabelError as exc:
            if exc.retryable:
                raise
            # A refusal can answer a repeat: an overlapping run asked a moment before (after
            # this one read the answer). The label went back then; a real refusal stands.
            try:
                asked = self._refund_asked(str(answer["id"]))
            except LabelError as unanswered:
                if unanswered.retryable:
                    raise  # not known: the record stays for a later run
                asked = False
            if not asked:
                raise

    # --- a purchase, and one a stopped worker left behind ---

    def _shipment_bought(self, shipment: Shipment, body: dict) -> dict:
        """The service's answer to buying the parcel's label with `body`, under its idempotency
        key. The body is written down on the parcel before it is sent (`label_request`), so a
        worker stopped after the service sold the label and before tkerp stored it leaves what
        the key was used with. A retry with the same details gets that label back; one for an
        order changed meanwhile (another recipient or weight) is refused by the service
        (`IDEMPOTENCY.KEY_REUSED`), and then the label sold for the parcel as it was is voided
        and the label bought anew under the parcel's next key (`_earlier_purchase_void`)."""
        content = json_bytes(body)
        try:
            return self._shipment_create(shipment, content)
        except LabelError as exc:
            if exc.code != KEY_REUSED:
                raise
        self._earlier_purchase_void(shipment, content)
        return self._shipment_create(shipment, content)

    def _shipment_create(self, shipment: Shipment, content: bytes) -> dict:
        key = label_idempotency_key(shipment)
        # By the parcel's pk (it was read in its tenant; a source may be used with none in
        # scope). Written once per key: a body already written under this key is the one the
        # service may have sold a label for, and must stay until that label is stored or voided.
        # A body under the parcel's earlier key is a label sold then whose void a stopped worker
        # left undone (`_earlier_purchase_void` keeps it until the refund is answered): it is
        # voided first. Only by a worker that read the parcel as it is (its key current): one
        # that read it before a void must not take the current key's body for an old one, nor
        # one that read it before its label was stored leave the recipient on a labelled parcel.
        text = content.decode()
        parcel = Shipment._base_manager.filter(
            pk=shipment.pk, label_voids=shipment.label_voids, tracking_number=""
        )
        held = parcel.values_list("label_request_key", "label_request").first()
        if held and held[0] and held[0] != key:
            self._earlier_label_void(shipment, key=held[0], sent=held[1], label_id="")
        elif (
            held and held[0] == key and held[1] != text and not self.request_sent_here(sent=held[1])
        ):
            # The key went to another of the seller's accounts (switched since): this one has
            # not seen it and would sell a second label, and storing that would forget the first.
            self._other_account_label_void(shipment, key=key, sent=held[1])
        parcel.exclude(label_request_key=key).update(label_request_key=key, label_request=text)
        try:
            return self._send("POST", "/shipments", content=content, idempotency_key=key)
        except LabelError as exc:
            if not exc.retryable and exc.code != KEY_REUSED:
                # Refused (an address to correct, funds...): nothing was sold under the key for
                # this body, so it is forgotten and the corrected one is written down next time.
                # An answer never had (retryable) may have sold a label: that body stays.
                Shipment._base_manager.filter(
                    pk=shipment.pk, label_request_key=key, label_request=text
                ).update(label_request_key="", label_request="")
            raise

    def _earlier_purchase_void(self, shipment: Shipment, content: bytes) -> None:
        """The service refused the parcel's key for its current details: a label was bought
        under it for the parcel as it was. Ask again with the body written down then (the
        service hands that label back without selling another), move the parcel to its next
        key, note it on the order, and void that label. Raises `LabelError` for a person when
        there is no body to ask with (a purchase older than this record) or the void fails:
        the message names the label to void at the service, and a retry buys the new one."""
        from orders.models import EventSource, OrderEvent

        key = label_idempotency_key(shipment)
        sent = (
            Shipment._base_manager.filter(pk=shipment.pk, label_request_key=key)
            .values_list("label_request", flat=True)
            .first()
        )
        label_id = number = ""
        # What this attempt wrote down itself (no earlier request was there) is no help.
        sent = sent if sent and sent.encode() != content else ""
        if sent:
            try:
                label_id, number = self._label_replayed(key=key, sent=sent)
            except LabelError as exc:
                if exc.retryable:
                    raise
                # Refused (the service may check the body before the key): not what the key was
                # used with either. That request never reached the service, or it was refused
                # and a later one sold: no copy to ask with.
                sent = ""
        sold = bool(label_id)
        reference = shipment.reference
        named = label_named(tracking_number=number, label_id=label_id)
        with transaction.atomic(durable=True):
            locked = Shipment._base_manager.select_for_update().get(pk=shipment.pk)
            if locked.tracking_number or label_idempotency_key(locked) != key:
                raise LabelError(
                    f"parcel {reference} changed while its label was bought; try again",
                    code="changed",
                    retryable=True,
                )
            locked.label_voids += 1
            # A label sold under the old key keeps its request until its refund is answered: a
            # worker stopped before that leaves it for the next purchase to void first.
            locked.label_request_key = key if sold else ""
            locked.label_request = sent if sold else ""
            locked.save(update_fields=["label_voids", "label_request_key", "label_request"])
            if not sent:
                what = (
                    f"a label was bought for parcel {reference} under its key for the parcel as "
                    "it was before its order changed, and tkerp holds no copy of that request: "
                    f"find reference {reference} at the label service and void it there"
                )
            elif sold:
                what = (
                    f"{named} (label {label_id}) was bought for parcel {reference} as it was "
                    "before its order changed, and never stored (a worker stopped): it goes "
                    "back to the label service for a refund, and a label is bought for the "
                    "order as it is now"
                )
            else:
                what = f"parcel {reference} was sent to the label service before its order changed"
            OrderEvent._base_manager.create(
                tenant_id=locked.tenant_id,
                order_id=locked.order_id,
                kind="shipment.label_replaced",
                message=what[:500],
                data={"shipment": reference, "label_id": label_id, "tracking_number": number},
                source=EventSource.SYSTEM,
            )
        shipment.label_voids = locked.label_voids
        if not sent:
            raise LabelError(what, code="unknown_purchase")
        if not sold:
            return
        self._earlier_label_void(shipment, key=key, sent=sent, label_id=label_id, named=named)

    def _earlier_label_void(
        self, shipment: Shipment, *, key: str, sent: str, label_id: str, named: str = ""
    ) -> None:
        """Refund the label sold under the parcel's earlier `key` for the request `sent`
        (asked for again when its id is not known: the service replays it), then forget that
        request. A refusal is for a person, naming the label; the request is forgotten then too,
        so a retry buys the parcel's new label."""
        reference = shipment.reference
        try:
            if not label_id:
                label_id, number = self._label_replayed(key=key, sent=sent)
                named = label_named(tracking_number=number, label_id=label_id)
            if label_id:
                self._refund(label_id)
        except LabelError as exc:
            if exc.retryable:
                raise  # not answered: the request stays for the next attempt
            raise self._void_refused(
                shipment,
                key,
                exc,
                label=named or f"the label of reference {reference}",
                bought="before its order changed",
                where="at the label service",
            ) from exc
        self._earlier_request_forget(shipment, key)

    def _void_refused(
        self, shipment: Shipment, key: str, exc: LabelError, *, label: str, bought: str, where: str
    ) -> LabelError:
        """A refund of a label left under the parcel's `key` refused for good: the request is
        forgotten (a retry buys the parcel's label) and the error, for a person, names the label
        and where to void it."""
        self._earlier_request_forget(shipment, key)
        return LabelError(
            f"{label}, bought for parcel {shipment.reference} {bought}, could not be voided "
            f"({exc.reason}): void it {where}; a retry buys the parcel's label",
            code="refund",
        )

    def _other_account_label_void(self, shipment: Shipment, *, key: str, sent: str) -> None:
        """Refund the label sold under the parcel's `key` for the request `sent` at the seller's
        other label account it went to (asked there without buying: `purchase_left`), note it on
        the order and forget the request. A refusal is for a person, naming the label; the
        request is forgotten then too, so a retry buys the parcel's label here."""
        from logistics.labels.left_behind import label_source_of_request
        from orders.models import EventSource, OrderEvent

        reference = shipment.reference
        source = label_source_of_request(shipment, sent)
        if source is None:
            self._earlier_request_forget(shipment, key)
            raise LabelError(
                f"parcel {reference} was sent to a label account tkerp no longer has: find "
                f"reference {reference} at the label service and void any label sold for it "
                "there; a retry buys the parcel's label",
                code="unknown_purchase",
            )
        try:
            answer = source.purchase_left(key=key, sent=sent)
            if answer is not None:
                source.purchase_left_refund(answer=answer)
        except LabelError as exc:
            if exc.retryable:
                raise  # not answered: the request stays for the next attempt
            raise self._void_refused(
                shipment,
                key,
                exc,
                label=f"the label of reference {reference}",
                bought=f"at label account {source.account.name}",
                where="there",
            ) from exc
        finally:
            source.close()
        if answer is not None:
            number = str(answer.get("tracking_code") or "")
            named = label_named(tracking_number=number, label_id=str(answer["id"]))
            OrderEvent._base_manager.create(
                tenant_id=shipment.tenant_id,
                order_id=shipment.order_id,
                kind="shipment.label_replaced",
                message=(
                    f"{named} was bought for parcel {reference} at label account "
                    f"{source.account.name} and never stored (a worker stopped): it goes back "
                    "for a refund, and the label is bought at the parcel's account now"
                )[:500],
                data={
                    "shipment": reference,
                    "label_id": str(answer["id"]),
                    "tracking_number": number,
                },
                source=EventSource.SYSTEM,
            )
        self._earlier_request_forget(shipment, key)

    def _label_replayed(self, *, key: str, sent: str) -> tuple[str, str]:
        """(label id, tracking number) of the label the service sold under `key` for the request
        `sent`, asked again (the service replays it, selling nothing); ("", "") when that
        request sold no label."""
        answer = self._send("POST", "/shipments", content=sent.encode(), idempotency_key=key)
        answer = answer if isinstance(answer, dict) else {}
        if isinstance(answer.get("postage_label"), dict) and answer.get("id"):
            return str(answer["id"]), str(answer.get("tracking_code") or "")
        return "", ""

    @staticmethod
    def _earlier_request_forget(shipment: Shipment, key: str) -> None:
        Shipment._base_manager.filter(pk=shipment.pk, label_request_key=key).update(
            label_request_key="", label_request=""
        )
