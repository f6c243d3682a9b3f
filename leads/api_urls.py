from django.urls import path
from rest_framework.routers import DefaultRouter

from . import api

router = DefaultRouter()
router.register("accounts", api.AccountViewSet, basename="account")
router.register("contacts", api.ContactViewSet, basename="contact")
router.register("activity-types", api.ActivityTypeViewSet, basename="activity-type")
router.register("activities", api.ActivityViewSet, basename="activity")

urlpatterns = [
    path("activities/bulk/", api.BulkIngestView.as_view(), name="activity-bulk-ingest"),
    *router.urls,
]
