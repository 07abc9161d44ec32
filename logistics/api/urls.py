"""`/api/v1/`: the provider API's routes (a router per app; see tkerp/urls.py)."""

from rest_framework.routers import SimpleRouter

from logistics.api.views import ParcelViewSet, SkuMappingViewSet, StockViewSet

router = SimpleRouter()
router.register("parcels", ParcelViewSet, basename="api-parcel")
router.register("stock", StockViewSet, basename="api-stock")
router.register("sku-mappings", SkuMappingViewSet, basename="api-sku-mapping")

urlpatterns = router.urls
