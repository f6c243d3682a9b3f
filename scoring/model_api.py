"""Scoring models over the API, as on the marketer's pages: versions and their differences, a
draft's rules, levels and settings, its preview, publishing, and the rescore's progress.

Marketing and Admin only, as the pages. Input is checked by the pages' own forms, so the API
accepts exactly the rules the pages accept, with the same messages; a version that is not a
draft cannot be changed (409)."""

from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from leads.models import ActivityType
from leads.permissions import IsMarketing

from . import selectors, versions
from .forms import EngagementRuleForm, FitRuleForm, MqlLevelForm, VersionSettingsForm
from .models import EngagementRule, FitRule, ModelVersion, MqlLevel, MqlQualification, RescoreRun, ScoringModel
from .serializers import (
    DetailOutput,
    EngagementRuleInput,
    EngagementRuleOutput,
    FitRuleInput,
    FitRuleOutput,
    MqlLevelInput,
    MqlLevelOutput,
    PreviewOutput,
    RescoreRunOutput,
    RescoreRunSummaryOutput,
    RuleDiffOutput,
    ScoringModelOutput,
    VersionOutput,
    VersionSettingsInput,
    VersionSummaryOutput,
)
from .services import draft_preview_get_or_start

NOT_A_DRAFT = OpenApiResponse(DetailOutput, description="The version is not a draft (published versions never change).")


def _conflict(error: versions.VersionError) -> Response:
    return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)


def _not_a_draft(version: ModelVersion) -> Response | None:
    """409 before the input is read: whatever it says, a published version does not change."""
    if version.status == ModelVersion.Status.DRAFT:
        return None
    return _conflict(versions.VersionError(versions.NOT_A_DRAFT))


def _version(version_id: int) -> ModelVersion:
    rules = Prefetch("engagement_rules", EngagementRule.objects.select_related("activity_type"))
    queryset = ModelVersion.objects.select_related("published_by").prefetch_related("fit_rules", rules, "mql_levels")
    return get_object_or_404(queryset, pk=version_id)


def _form_errors(form) -> dict:
    """A form's errors under the API's field names."""
    names = {"value_text": "value", "__all__": "non_field_errors"}
    return {names.get(field, field): list(messages) for field, messages in form.errors.items()}


def _validated_form(form):
    if not form.is_valid():
        raise serializers.ValidationError(_form_errors(form))
    return form


class ScoringModelList(generics.ListAPIView):
    """The scoring models, each with its active version and its draft (ids, or null)."""

    permission_classes = [IsMarketing]
    serializer_class = ScoringModelOutput
    filter_backends = []
    queryset = ScoringModel.objects.prefetch_related("versions").order_by("id")


class DraftCreate(APIView):
    permission_classes = [IsMarketing]

    @extend_schema(
        request=None,
        responses={200: VersionOutput, 201: VersionOutput},
        description="The model's draft: 200 with the one being edited, or 201 with a new copy of the active version.",
    )
    def post(self, request, model_id: int):
        scoring_model = get_object_or_404(ScoringModel, pk=model_id)
        existed = scoring_model.versions.filter(status=ModelVersion.Status.DRAFT).exists()
        draft = versions.draft_get_or_create(scoring_model=scoring_model, user=request.user)
        answer = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        return Response(VersionOutput(_version(draft.pk)).data, status=answer)


class VersionList(generics.ListAPIView):
    """Every version, newest first; filter by model or status."""

    permission_classes = [IsMarketing]
    serializer_class = VersionSummaryOutput
    filter_backends = [DjangoFilterBackend]
    filterset_fields = ["scoring_model", "status"]
    queryset = ModelVersion.objects.select_related("published_by").order_by("scoring_model_id", "-number")


class VersionDetail(APIView):
    permission_classes = [IsMarketing]

    @extend_schema(responses=VersionOutput, description="The version: its settings, rules and MQL levels.")
    def get(self, request, version_id: int):
        return Response(VersionOutput(_version(version_id)).data)

    @extend_schema(
        request=VersionSettingsInput,
        responses={200: VersionOutput, 409: NOT_A_DRAFT},
        description="Change a draft's note, caps, grade thresholds or qualified-account threshold.",
    )
    def patch(self, request, version_id: int):
        version = _version(version_id)
        if refused := _not_a_draft(version):
            return refused
        data = VersionSettingsInput(data=request.data)
        data.is_valid(raise_exception=True)
        current = {field: getattr(version, field) for field in VersionSettingsForm._meta.fields}
        form = VersionSettingsForm({**current, **data.validated_data}, instance=version)
        try:
            versions.version_settings_save(version=version, form=_validated_form(form))
        except versions.VersionError as error:
            return _conflict(error)
        return Response(VersionOutput(_version(version_id)).data)

    @extend_schema(responses={204: None, 409: NOT_A_DRAFT}, description="Discard a draft and its rules.")
    def delete(self, request, version_id: int):
        try:
            versions.draft_discard(draft=get_object_or_404(ModelVersion, pk=version_id))
        except versions.VersionError as error:
            return _conflict(error)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionDiff(APIView):
    permission_classes = [IsMarketing]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "against",
                int,
                description="The version to compare with; by default the one this version was copied from "
                "(for a model's first version: none, so every rule is added).",
            )
        ],
        responses=RuleDiffOutput(many=True),
        description="What changed from the other version to this one: rules added, removed and changed, "
        "MQL levels and settings.",
    )
    def get(self, request, version_id: int):
        version = get_object_or_404(ModelVersion, pk=version_id)
        against = request.query_params.get("against")
        try:
            other_id = version.based_on_id if against is None else int(against)
        except ValueError:
            raise serializers.ValidationError({"against": ["Give the id of a version."]}) from None
        other = get_object_or_404(ModelVersion, pk=other_id) if other_id is not None else None
        return Response(RuleDiffOutput(versions.version_diff(other, version), many=True).data)


# --- a draft's rules and levels ---------------------------------------------------------------


class _RuleKind:
    """How one kind of rule goes between the API and the page's form: the rule as the form
    would show it (what a partial update starts from), with the API's input over it."""

    model = form_class = related = input_serializer = output_serializer = None

    def form(self, version, rule, data: dict):
        return self.form_class({**self.form_data(rule), **self.translated(data)}, instance=rule)

    def form_data(self, rule) -> dict:
        raise NotImplementedError

    def translated(self, data: dict) -> dict:
        return data


class _FitKind(_RuleKind):
    model = FitRule
    form_class = FitRuleForm
    related = "fit_rules"
    input_serializer = FitRuleInput
    output_serializer = FitRuleOutput

    def form(self, version, rule, data: dict):
        current = self.form_data(rule)
        if rule is not None and data.get("operator", rule.operator) != rule.operator:
            # Another operator reads its value otherwise (a range as a text, a text as a list): it
            # needs its own, or none.
            current.pop("value_text", None)
        return self.form_class({**current, **self.translated(data)}, instance=rule)

    def form_data(self, rule) -> dict:
        if rule is None:
            return {}
        return {"name": rule.name, "field": rule.field, "operator": rule.operator, "points": rule.points} | (
            self.translated({"value": rule.value})
        )

    def translated(self, data: dict) -> dict:
        """The API's value (a text, a list, [min, max] or null) as the form's text."""
        data = dict(data)
        if "value" in data:
            value = data.pop("value")
            if isinstance(value, list):
                data["value_text"] = ", ".join("" if item is None else str(item) for item in value)
            else:
                data["value_text"] = "" if value is None else str(value)
        return data


class _EngagementKind(_RuleKind):
    model = EngagementRule
    form_class = EngagementRuleForm
    related = "engagement_rules"
    input_serializer = EngagementRuleInput
    output_serializer = EngagementRuleOutput
    NULLABLE = ("cap", "window_days", "half_life_days")

    def form_data(self, rule) -> dict:
        if rule is None:
            return {}
        data = {field: getattr(rule, field) for field in self.form_class._meta.fields if field != "activity_type"}
        return self.translated({**data, "activity_type": rule.activity_type_id})

    def translated(self, data: dict) -> dict:
        data = {key: "" if key in self.NULLABLE and value is None else value for key, value in data.items()}
        key = data.get("activity_type")
        if isinstance(key, str):  # the API names an activity type by its key; the form takes its id
            found = ActivityType.objects.filter(key=key).values_list("pk", flat=True).first()
            if found is None:
                raise serializers.ValidationError({"activity_type": [f"No activity type with the key “{key}”."]})
            data["activity_type"] = found
        return data


class _LevelKind(_RuleKind):
    model = MqlLevel
    form_class = MqlLevelForm
    related = "mql_levels"
    input_serializer = MqlLevelInput
    output_serializer = MqlLevelOutput

    def form(self, version, rule, data: dict):
        return self.form_class({**self.form_data(rule), **data}, instance=rule, version=version)

    def form_data(self, rule) -> dict:
        if rule is None:
            return {"min_fit_grade": "C"}
        return {"name": rule.name, "min_score": rule.min_score, "min_fit_grade": rule.min_fit_grade}


class RuleCollection(APIView):
    permission_classes = [IsMarketing]
    kind: _RuleKind

    def post(self, request, version_id: int):
        version = get_object_or_404(ModelVersion, pk=version_id)
        if refused := _not_a_draft(version):
            return refused
        data = self.kind.input_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        form = _validated_form(self.kind.form(version, None, data.validated_data))
        try:
            versions.rule_save(version=version, form=form)
        except versions.VersionError as error:
            return _conflict(error)
        return Response(self.kind.output_serializer(form.instance).data, status=status.HTTP_201_CREATED)


class RuleDetail(APIView):
    permission_classes = [IsMarketing]
    kind: _RuleKind

    def _rule(self, version_id: int, rule_id: int):
        version = get_object_or_404(ModelVersion, pk=version_id)
        return version, get_object_or_404(getattr(version, self.kind.related), pk=rule_id)

    def get(self, request, version_id: int, rule_id: int):
        _, rule = self._rule(version_id, rule_id)
        return Response(self.kind.output_serializer(rule).data)

    def patch(self, request, version_id: int, rule_id: int):
        version, rule = self._rule(version_id, rule_id)
        if refused := _not_a_draft(version):
            return refused
        data = self.kind.input_serializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        form = _validated_form(self.kind.form(version, rule, data.validated_data))
        try:
            versions.rule_save(version=version, form=form)
        except versions.VersionError as error:
            return _conflict(error)
        return Response(self.kind.output_serializer(form.instance).data)

    def delete(self, request, version_id: int, rule_id: int):
        version, rule = self._rule(version_id, rule_id)
        try:
            versions.rule_delete(version=version, rule=rule)
        except versions.VersionError as error:
            return _conflict(error)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _rule_views(kind: _RuleKind, label: str, article: str = "a") -> tuple[type, type]:
    """The collection (add) and item (read, change, remove) views of one kind of rule.
    extend_schema_view gives each subclass its own copy of the inherited methods, so each kind
    keeps its own schema."""
    output, given = kind.output_serializer, kind.input_serializer
    collection = extend_schema_view(
        post=extend_schema(
            request=given, responses={201: output, 409: NOT_A_DRAFT}, description=f"Add {article} {label} to a draft."
        )
    )(type(f"{kind.model.__name__}Collection", (RuleCollection,), {"kind": kind}))
    item = extend_schema_view(
        get=extend_schema(responses=output, description=f"One {label} of a version."),
        patch=extend_schema(
            request=given, responses={200: output, 409: NOT_A_DRAFT}, description=f"Change a draft's {label}."
        ),
        delete=extend_schema(responses={204: None, 409: NOT_A_DRAFT}, description=f"Remove a {label} from a draft."),
    )(type(f"{kind.model.__name__}Detail", (RuleDetail,), {"kind": kind}))
    return collection, item


FitRuleCollection, FitRuleDetail = _rule_views(_FitKind(), "fit rule")
EngagementRuleCollection, EngagementRuleDetail = _rule_views(_EngagementKind(), "engagement rule", "an")
MqlLevelCollection, MqlLevelDetail = _rule_views(_LevelKind(), "MQL level", "an")


# --- preview, publish, rescore ----------------------------------------------------------------


IS_ACTIVE = OpenApiResponse(DetailOutput, description="The version is the active one.")


class VersionPreview(APIView):
    permission_classes = [IsMarketing]

    @staticmethod
    def _previewable(version_id: int) -> tuple[ModelVersion, Response | None]:
        """The version, and a 409 when it is the active one: its preview would compare the
        stored scores with themselves."""
        version = get_object_or_404(ModelVersion, pk=version_id)
        if version.status != ModelVersion.Status.ACTIVE:
            return version, None
        detail = "This is the active version: a preview shows what another version would change."
        return version, Response({"detail": detail}, status=status.HTTP_409_CONFLICT)

    @extend_schema(
        responses={200: PreviewOutput, 409: IS_ACTIVE},
        description="What publishing this version would do: new MQLs and drops with examples, against the "
        "scores stored now. Computed by a worker: started by the first request, its progress until it finishes.",
    )
    def get(self, request, version_id: int):
        version, refused = self._previewable(version_id)
        if refused:
            return refused
        return Response(PreviewOutput(draft_preview_get_or_start(version=version, user=request.user)).data)

    @extend_schema(
        request=None,
        responses={202: PreviewOutput, 409: IS_ACTIVE},
        description="Compute the preview again (the stored scores have moved since, or it failed).",
    )
    def post(self, request, version_id: int):
        version, refused = self._previewable(version_id)
        if refused:
            return refused
        preview = draft_preview_get_or_start(version=version, user=request.user, again=True)
        return Response(PreviewOutput(preview).data, status=status.HTTP_202_ACCEPTED)


def _run_output(run: RescoreRun) -> dict:
    for name, value in selectors.run_outcome(run).items():
        setattr(run, name, value)
    return RescoreRunOutput(run).data


class VersionPublish(APIView):
    permission_classes = [IsMarketing]

    @extend_schema(
        request=None,
        responses={
            202: RescoreRunOutput,
            409: OpenApiResponse(DetailOutput, description="Not a draft, or a draft without any MQL level."),
        },
        description="Make the draft the active version. Every contact is then rescored by the workers: "
        "follow the run (/api/scoring/runs/{id}/).",
    )
    def post(self, request, version_id: int):
        try:
            run = versions.version_publish(draft=get_object_or_404(ModelVersion, pk=version_id), user=request.user)
        except versions.VersionError as error:
            return _conflict(error)
        return Response(_run_output(run), status=status.HTTP_202_ACCEPTED)


class RescoreRunList(generics.ListAPIView):
    """Full rescores, newest first, with their progress (a run's new MQLs: its own answer)."""

    permission_classes = [IsMarketing]
    serializer_class = RescoreRunSummaryOutput
    filter_backends = []

    def get_queryset(self):
        qualified = MqlQualification.objects.filter(run=OuterRef("pk")).order_by().values("run")
        new_mqls = Subquery(qualified.annotate(count=Count("pk")).values("count"))
        return RescoreRun.objects.annotate(new_mqls=Coalesce(new_mqls, 0)).order_by("-created_at")


class RescoreRunDetail(APIView):
    permission_classes = [IsMarketing]

    @extend_schema(
        responses=RescoreRunOutput,
        description="A full rescore's progress; once finished, the leads it made MQLs (the best 25).",
    )
    def get(self, request, run_id: int):
        return Response(_run_output(get_object_or_404(RescoreRun, pk=run_id)))
