from django.urls import path
from rest_framework.routers import DefaultRouter

from . import api, handoff_api

router = DefaultRouter()
router.register("accounts", api.AccountViewSet, basename="account")
router.register("contacts", api.ContactViewSet, basename="contact")
router.register("activity-types", api.ActivityTypeViewSet, basename="activity-type")
router.register("activities", api.ActivityViewSet, basename="activity")

urlpatterns = [
    path("activities/bulk/", api.BulkIngestView.as_view(), name="activity-bulk-ingest"),
    path("queue/", handoff_api.QueueView.as_view(), name="queue"),
    path("leads/<int:pk>/accept/", handoff_api.AcceptView.as_view(), name="lead-accept"),
    path("leads/<int:pk>/reject/", handoff_api.RejectView.as_view(), name="lead-reject"),
    path("leads/<int:pk>/claim/", handoff_api.ClaimView.as_view(), name="lead-claim"),
    path("leads/<int:pk>/feedback/", handoff_api.FeedbackView.as_view(), name="lead-feedback"),
    path("leads/<int:pk>/outcomes/", handoff_api.OutcomeView.as_view(), name="lead-outcome"),
    path("leads/<int:pk>/reassign/", handoff_api.ReassignView.as_view(), name="lead-reassign"),
    *router.urls,
]
