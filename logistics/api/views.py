"""The provider API, `/api/v1/`: what a 3PL or drop-ship supplier reads and reports.

Every view is a thin caller: input is validated by a serializer, the work is done by
`logistics.providers` (and `logistics.api.shipping` for the ship door), output is built by
`logistics.api.serializers`. The key decides the tenant (scope) and the provider; a parcel,
stock level or mapping of another tenant or another provider is the same 404 as a missing one.
"""

from __future__ import annotations

import json

import django_filters
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse
from django_filters.utils import translate_validation
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import exceptions
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from inventory.models import StockLevel, SupplierItem
from logistics.api.auth import HasProviderKey, PerKeyThrottle, ProviderKeyAuthentication
from logistics.api.serializers import (
    AcknowledgeIn,
    EventIn,
    EventOut,
    InterceptIn,
    ParcelOut,
    ShipIn,
    ShipOut,
    SkuMappingOut,
    StockLevelOut,
    StockSetIn,
    StockSetOut,
    event_data,
    parcels_data,
    parcels_page_json,
    sku_mapping_data,
    stock_data,
)
from logistics.api.shipping import api_parcel_ship
from logistics.models import ParcelEvent, Shipment, ShipmentStatus
from logistics.providers import (
    ProviderActionError,
    StockCount,
    provider_event_record,
    provider_parcels,
    provider_stock_set,
    shipment_acknowledge,
    shipment_intercept_answer,
    shipment_reject,
)
from tkerp.api.idempotency import idempotent
from tkerp.api.pagination import ApiCursorPagination, KeysetPagination
from tkerp.api.problems import Conflict, Unprocessable
from tkerp.tenancy import reset_scope, set_scope

# --- examples (every operation of the schema has one) ------------------------------------------

PARCEL_EXAMPLE = {
    "id": 4821,
    "reference": "TK1207-W3",
    "status": "sent_to_provider",
    "warehouse": "3PL-NJ",
    "order": {
        "id": "576612345678901234",
        "platform": "tiktok",
        "placed_at": "2026-12-03T09:12:44Z",
        "paid_at": "2026-12-03T09:13:02Z",
        "buyer_note": "",
    },
    "service": {"carrier": "usps", "code": "ground_advantage", "name": "Ground Advantage"},
    "recipient": {
        "name": "Jamie Buyer",
        "phone": "+14155550123",
        "address_line1": "1 Market St",
        "address_line2": "Apt 4",
        "city": "San Francisco",
        "state": "CA",
        "postal_code": "94105",
        "country": "US",
    },
    "lines": [
        {
            "id": 9911,
            "sku": "LIP-RED-01",
            "name": "Velvet lipstick, red",
            "quantity": 2,
            "supplier_item_code": "YW-88213",
        }
    ],
    "deadlines": {
        "ship_by": "2026-12-04T09:13:02Z",
        "tracking_by": "2026-12-05T09:13:02Z",
        "acknowledge_by": "2026-12-03T09:45:00Z",
        "tracking_due": None,
    },
    "tracking_number": "",
    "dispatched_at": "2026-12-03T09:15:00Z",
    "acknowledged_at": None,
    "rejected_at": None,
    "reject_reason": "",
    "intercept_state": "",
    "shipped_at": None,
    "created_at": "2026-12-03T09:14:10Z",
    "updated_at": "2026-12-03T09:15:00Z",
}
SHIPPED_EXAMPLE = {
    **PARCEL_EXAMPLE,
    "status": "shipped",
    "tracking_number": "9400111000000000000019",
    "acknowledged_at": "2026-12-03T09:20:00Z",
    "shipped_at": "2026-12-03T10:02:11Z",
}
STOCK_EXAMPLE = {
    "warehouse": "3PL-NJ",
    "sku": "LIP-RED-01",
    "on_hand": 140,
    "reserved": 12,
    "free": 128,
    "updated_at": "2026-12-03T08:00:00Z",
}
EVENT_EXAMPLE = {
    "id": 77,
    "kind": "packed",
    "note": "",
    "occurred_at": "2026-12-03T09:40:00Z",
    "created_at": "2026-12-03T09:40:02Z",
}


def _page(results: list[dict]) -> dict:
    return {"next": "https://erp.example.com/api/v1/…?cursor=cD0yMDI2", "previous": None,
            "results": results}  # fmt: skip


def _example(name: str, value, *, request: bool = False, status: str = "200") -> OpenApiExample:
    if request:
        return OpenApiExample(name, value=value, request_only=True)
    return OpenApiExample(name, value=value, response_only=True, status_codes=[status])


# --- the base -----------------------------------------------------------------------------------


class ProviderAPIView(GenericViewSet):
    """Authenticated by a provider key, scoped to its tenant, throttled per key, errors as
    problem details (tkerp.api.problems)."""

    authentication_classes = [ProviderKeyAuthentication]
    permission_classes = [HasProviderKey]
    throttle_classes = [PerKeyThrottle]
    pagination_class = ApiCursorPagination
    lookup_value_regex = r"[0-9]{1,18}"

    def dispatch(self, request, *args, **kwargs):
        # Fail closed until the key names the tenant (a signed-in admin user's session scope
        # never leaks into the API); whatever the key set is undone when the request ends.
        token = set_scope(None)
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            reset_scope(token)

    def perform_content_negotiation(self, request, force=False):
        # The API writes JSON only: a client that asks for nothing in particular, or for JSON,
        # gets it without DRF parsing the Accept header on every request; anything else is
        # negotiated as usual (a 406 for what the API cannot write).
        if request.META.get("HTTP_ACCEPT", "*/*") in ("*/*", "application/json"):
            renderer = self.get_renderers()[0]
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)

    @property
    def provider(self):
        return self.request.auth.provider


def _refusal(exc: ProviderActionError) -> exceptions.APIException:
    """A domain refusal as the API answers it."""
    if exc.status == 404:
        return exceptions.NotFound(exc.message)
    if exc.status == 422:
        return Unprocessable(
            exc.message, code=exc.code, errors={exc.field: [exc.message]} if exc.field else None
        )
    return Conflict(exc.message, code=exc.code)


def _invalid(exc: DjangoValidationError) -> Unprocessable:
    return Unprocessable(
        "Some rows were refused; nothing was changed. See errors.",
        code="invalid",
        errors={field: list(messages) for field, messages in exc.message_dict.items()},
    )


# --- parcels ------------------------------------------------------------------------------------


class ParcelFilter(django_filters.FilterSet):
    updated_since = django_filters.IsoDateTimeFilter(
        field_name="updated_at",
        lookup_expr="gte",
        label="Parcels changed at or after this time (ISO 8601).",
    )
    status = django_filters.ChoiceFilter(choices=ShipmentStatus.choices)

    class Meta:
        model = Shipment
        fields = ["updated_since", "status"]


@extend_schema_view(
    list=extend_schema(
        summary="Parcels sent to your warehouses",
        description="Oldest change first; poll with `updated_since` and follow `next`. A change "
        "appears once every transaction open when it was made has ended, about a second later.",
        responses=ParcelOut(many=True),
        examples=[_example("A page of parcels", _page([PARCEL_EXAMPLE]))],
    ),
    retrieve=extend_schema(
        summary="One parcel",
        responses=ParcelOut,
        examples=[_example("A parcel", PARCEL_EXAMPLE)],
    ),
)
class ParcelViewSet(ProviderAPIView):
    filterset_class = ParcelFilter
    serializer_class = ParcelOut
    pagination_class = KeysetPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Shipment._base_manager.none()
        return provider_parcels(provider=self.provider)

    def get_object(self) -> Shipment:
        shipment = self.get_queryset().filter(pk=self.kwargs["pk"]).first()
        if shipment is None:
            raise exceptions.NotFound("No such parcel among yours.")
        return shipment

    def _one(self, shipment: Shipment) -> dict:
        return parcels_data([shipment.pk], provider=self.provider)[0]

    def list(self, request):
        # One prepared statement chooses the page (keyset on updated_at, id) and has PostgreSQL
        # write its parcels as JSON, joined here as they come rather than parsed and encoded
        # again: the ORM's queryset, DRF's cursor and psycopg's datetimes cost more CPU than
        # PostgreSQL spends on the whole page (bench/api.py --profile).
        keyset = self.paginator.keyset(request)
        rows = parcels_page_json(
            provider=self.provider,
            limit=keyset.limit + 1,
            reverse=keyset.reverse,
            position=keyset.position,
            **self._filters(request),
        )
        rows, following, preceding = self.paginator.page(keyset, rows, lambda row: (row[1], row[0]))
        links = json.dumps({"next": following, "previous": preceding})
        parcels = ",".join(row[2] for row in rows)
        return HttpResponse(
            f'{links[:-1]},"results":[{parcels}]}}', content_type="application/json"
        )

    def _filters(self, request) -> dict:
        # Without a filter in the query there is nothing to validate: django-filter would still
        # build and validate its form, about a sixth of a page's CPU.
        if not any(name in request.query_params for name in ParcelFilter.base_filters):
            return {}
        filterset = ParcelFilter(request.query_params, queryset=Shipment._base_manager.none())
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        chosen = filterset.form.cleaned_data
        return {
            "status": chosen.get("status") or None,
            "updated_since": chosen.get("updated_since"),
        }

    def retrieve(self, request, pk=None):
        return Response(self._one(self.get_object()))

    @extend_schema(
        summary="Accept or reject a parcel",
        description="Accept within your confirmation window. Rejecting (with a reason) sends the "
        "order back to the seller.",
        request=AcknowledgeIn,
        responses=ParcelOut,
        examples=[
            _example("Accept", {"decision": "accept"}, request=True),
            _example(
                "Reject",
                {"decision": "reject", "reason": "Out of stock at the shelf"},
                request=True,
            ),
            _example("Accepted", {**PARCEL_EXAMPLE, "acknowledged_at": "2026-12-03T09:20:00Z"}),
        ],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def acknowledge(self, request, pk=None):
        shipment = self.get_object()
        data = self._valid(AcknowledgeIn, request)
        try:
            if data["decision"] == "accept":
                shipment = shipment_acknowledge(shipment=shipment, provider=self.provider)
            else:
                shipment = shipment_reject(
                    shipment=shipment, provider=self.provider, reason=data["reason"]
                )
        except ProviderActionError as exc:
            raise _refusal(exc) from None
        return Response(self._one(shipment))

    @extend_schema(
        summary="Ship a parcel (or some of its lines) with its tracking number",
        description="The number must match the carrier's format and check digit and the carrier "
        "the parcel is booked with. Send `lines` to ship part of the parcel: the rest moves to a "
        "new parcel (`remainder`).",
        request=ShipIn,
        responses=ShipOut,
        examples=[
            _example(
                "Whole parcel",
                {"tracking_number": "9400111000000000000019", "carrier": "usps"},
                request=True,
            ),
            _example(
                "Some lines",
                {"tracking_number": "1Z999AA10123456784", "carrier": "ups", "lines": [9911]},
                request=True,
            ),
            _example("Shipped", {"parcel": SHIPPED_EXAMPLE, "remainder": None, "units": 2}),
        ],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def ship(self, request, pk=None):
        shipment = self.get_object()
        data = self._valid(ShipIn, request)
        try:
            outcome = api_parcel_ship(
                shipment=shipment,
                provider=self.provider,
                carrier_code=data["carrier"],
                tracking_number=data["tracking_number"],
                line_ids=data.get("lines"),
            )
        except ProviderActionError as exc:
            raise _refusal(exc) from None
        return Response(
            {
                "parcel": self._one(outcome.shipment),
                "remainder": self._one(outcome.remainder) if outcome.remainder else None,
                "units": outcome.units,
            }
        )

    @extend_schema(
        methods=["GET"],
        summary="What you reported about a parcel",
        request=None,
        responses=EventOut(many=True),
        examples=[_example("Events", [EVENT_EXAMPLE])],
    )
    @extend_schema(
        methods=["POST"],
        summary="Report picked, packed or an exception",
        description="An exception (with a note saying what) alerts the seller.",
        request=EventIn,
        responses={201: EventOut},
        examples=[
            _example("Packed", {"kind": "packed"}, request=True),
            _example("Exception", {"kind": "exception", "note": "Box crushed"}, request=True),
            _example("Recorded", EVENT_EXAMPLE, status="201"),
        ],
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None, filterset_class=None)
    def events(self, request, pk=None):
        if request.method == "POST":
            return self._event_create(request, pk=pk)
        shipment = self.get_object()
        events = ParcelEvent.objects.filter(shipment=shipment, provider=self.provider)
        return Response([event_data(event) for event in events.order_by("occurred_at", "pk")])

    @idempotent
    def _event_create(self, request, pk=None):
        shipment = self.get_object()
        data = self._valid(EventIn, request)
        try:
            event = provider_event_record(
                shipment=shipment,
                provider=self.provider,
                kind=data["kind"],
                note=data.get("note", ""),
                occurred_at=data.get("occurred_at"),
            )
        except ProviderActionError as exc:
            raise _refusal(exc) from None
        return Response(event_data(event), status=201)

    @extend_schema(
        summary="Answer an intercept request",
        description="After a `shipment.cancelled` webhook: `intercepted` (the parcel stopped; "
        "its stock returns to the seller) or `too_late` (it left).",
        request=InterceptIn,
        responses=ParcelOut,
        examples=[
            _example("Stopped", {"result": "intercepted"}, request=True),
            _example("Too late", {"result": "too_late", "note": "Picked up 10:05"}, request=True),
            _example(
                "Intercepted",
                {**PARCEL_EXAMPLE, "status": "cancelled", "intercept_state": "confirmed"},
            ),
        ],
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def intercept(self, request, pk=None):
        shipment = self.get_object()
        data = self._valid(InterceptIn, request)
        try:
            shipment = shipment_intercept_answer(
                shipment=shipment,
                provider=self.provider,
                intercepted=data["result"] == "intercepted",
                note=data.get("note", ""),
            )
        except ProviderActionError as exc:
            raise _refusal(exc) from None
        return Response(self._one(shipment))

    @staticmethod
    def _valid(serializer_class, request) -> dict:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


# --- stock --------------------------------------------------------------------------------------


class StockFilter(django_filters.FilterSet):
    warehouse = django_filters.CharFilter(field_name="warehouse__code", max_length=32)
    sku = django_filters.CharFilter(field_name="sku__code", max_length=64)

    class Meta:
        model = StockLevel
        fields = ["warehouse", "sku"]


@extend_schema_view(
    list=extend_schema(
        summary="Stock in your warehouses",
        responses=StockLevelOut(many=True),
        examples=[_example("A page of stock levels", _page([STOCK_EXAMPLE]))],
    ),
    create=extend_schema(
        summary="Set counted stock (bulk)",
        description="All or nothing. On hand can't be set below what open orders reserved.",
        request=StockSetIn,
        responses=StockSetOut,
        examples=[
            _example(
                "Counts",
                {"counts": [{"warehouse": "3PL-NJ", "sku": "LIP-RED-01", "on_hand": 140}]},
                request=True,
            ),
            _example("Stored", {"levels": [STOCK_EXAMPLE]}),
        ],
    ),
)
class StockViewSet(ProviderAPIView):
    filterset_class = StockFilter
    serializer_class = StockLevelOut

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return StockLevel._base_manager.none()
        return StockLevel.objects.filter(warehouse__provider=self.provider).select_related(
            "sku", "warehouse"
        )

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([stock_data(level) for level in page])

    @idempotent
    def create(self, request):
        serializer = StockSetIn(data=request.data)
        serializer.is_valid(raise_exception=True)
        counts = [StockCount(**row) for row in serializer.validated_data["counts"]]
        try:
            levels = provider_stock_set(provider=self.provider, counts=counts)
        except DjangoValidationError as exc:
            raise _invalid(exc) from None
        return Response({"levels": [stock_data(level) for level in levels]})


# --- SKU mapping --------------------------------------------------------------------------------


class MappingPagination(ApiCursorPagination):
    ordering = ("id",)


@extend_schema_view(
    list=extend_schema(
        summary="Your item codes for the seller's SKUs",
        description="From the seller's supplier records for you; empty for a 3PL.",
        responses=SkuMappingOut(many=True),
        examples=[
            _example(
                "A page of mappings",
                _page(
                    [
                        {
                            "id": 31,
                            "sku": "LIP-RED-01",
                            "name": "Velvet lipstick, red",
                            "barcode": "0840012345678",
                            "supplier_item_code": "YW-88213",
                            "min_order_quantity": 1,
                        }
                    ]
                ),
            )
        ],
    ),
)
class SkuMappingViewSet(ProviderAPIView):
    serializer_class = SkuMappingOut
    pagination_class = MappingPagination

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False) or self.provider.supplier_id is None:
            return SupplierItem._base_manager.none()
        return SupplierItem.objects.filter(supplier_id=self.provider.supplier_id).select_related(
            "sku"
        )

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([sku_mapping_data(item) for item in page])
