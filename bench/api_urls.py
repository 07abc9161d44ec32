"""URLs of bench/api.py's gunicorn: the project's, plus `/bench/bare-parcels/`, a bare DRF
list of the same rows the API's first page holds (no key, no scope, no throttle, a
ModelSerializer over the parcel rows) — the baseline the API is compared with."""

from django.urls import path
from rest_framework import generics, serializers
from rest_framework.permissions import AllowAny

from logistics.models import Shipment
from tkerp.tenancy import all_tenants
from tkerp.urls import urlpatterns as project_urlpatterns


class BareShipmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Shipment
        fields = "__all__"


class BareParcelList(generics.ListAPIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []
    pagination_class = None
    serializer_class = BareShipmentSerializer

    def get_queryset(self):
        return Shipment._base_manager.order_by("updated_at", "id")[:50]

    def list(self, request, *args, **kwargs):
        # Row-level security shows no row without a scope; the bench's one seller is all.
        with all_tenants():
            return super().list(request, *args, **kwargs)


urlpatterns = [path("bench/bare-parcels/", BareParcelList.as_view()), *project_urlpatterns]
