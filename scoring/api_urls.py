from django.urls import path

from . import api

urlpatterns = [
    path("contacts/<int:contact_id>/score/", api.ContactScoreView.as_view(), name="contact-score"),
    path(
        "contacts/<int:contact_id>/score-history/", api.ContactScoreHistoryView.as_view(), name="contact-score-history"
    ),
]
