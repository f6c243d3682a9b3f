from django.urls import path

from . import api, model_api

urlpatterns = [
    path("contacts/<int:contact_id>/score/", api.ContactScoreView.as_view(), name="contact-score"),
    path(
        "contacts/<int:contact_id>/score-history/", api.ContactScoreHistoryView.as_view(), name="contact-score-history"
    ),
    path("scoring/models/", model_api.ScoringModelList.as_view(), name="scoring-model-list"),
    path("scoring/models/<int:model_id>/draft/", model_api.DraftCreate.as_view(), name="scoring-draft"),
    path("scoring/versions/", model_api.VersionList.as_view(), name="scoring-version-list"),
    path("scoring/versions/<int:version_id>/", model_api.VersionDetail.as_view(), name="scoring-version"),
    path("scoring/versions/<int:version_id>/diff/", model_api.VersionDiff.as_view(), name="scoring-version-diff"),
    path(
        "scoring/versions/<int:version_id>/fit-rules/",
        model_api.FitRuleCollection.as_view(),
        name="scoring-fit-rules",
    ),
    path(
        "scoring/versions/<int:version_id>/fit-rules/<int:rule_id>/",
        model_api.FitRuleDetail.as_view(),
        name="scoring-fit-rule",
    ),
    path(
        "scoring/versions/<int:version_id>/engagement-rules/",
        model_api.EngagementRuleCollection.as_view(),
        name="scoring-engagement-rules",
    ),
    path(
        "scoring/versions/<int:version_id>/engagement-rules/<int:rule_id>/",
        model_api.EngagementRuleDetail.as_view(),
        name="scoring-engagement-rule",
    ),
    path("scoring/versions/<int:version_id>/levels/", model_api.MqlLevelCollection.as_view(), name="scoring-levels"),
    path(
        "scoring/versions/<int:version_id>/levels/<int:rule_id>/",
        model_api.MqlLevelDetail.as_view(),
        name="scoring-level",
    ),
    path("scoring/versions/<int:version_id>/preview/", model_api.VersionPreview.as_view(), name="scoring-preview"),
    path("scoring/versions/<int:version_id>/publish/", model_api.VersionPublish.as_view(), name="scoring-publish"),
    path("scoring/runs/", model_api.RescoreRunList.as_view(), name="scoring-run-list"),
    path("scoring/runs/<int:run_id>/", model_api.RescoreRunDetail.as_view(), name="scoring-run"),
]
