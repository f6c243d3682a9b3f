"""The sales hand-off over the API: the queue, accept, reject, claim, feedback, outcomes."""

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.selectors import scores_explain

from . import handoff
from .forms_handoff import REP_REASONS
from .models import Contact, LeadFeedback, Outcome
from .queue import MAX_WAITING_HOURS, QueueFilter, mql_queue, sla_state, top_reasons
from .roles import SALES, has_role


class IsSales(BasePermission):
    message = "Only sales reps, managers and admins work the MQL queue."

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, SALES)


class QueueItemOutput(serializers.ModelSerializer):
    # Null when the lead has no account, no owner or no score yet.
    account_name = serializers.CharField(source="account.name", default=None, allow_null=True)
    owner = serializers.CharField(source="owner.username", default=None, allow_null=True)
    score = serializers.DecimalField(
        source="score.total", max_digits=8, decimal_places=1, default=None, allow_null=True
    )
    fit_grade = serializers.CharField(source="score.fit_grade", default=None, allow_null=True)
    mql_level = serializers.CharField(source="score.mql_level", default=None, allow_null=True)
    top_reasons = serializers.SerializerMethodField()
    sla = serializers.SerializerMethodField()

    class Meta:
        model = Contact
        fields = [
            "id",
            "email",
            "first_name",
            "last_name",
            "job_title",
            "account_name",
            "country",
            "lead_source",
            "owner",
            "score",
            "fit_grade",
            "mql_level",
            "mql_at",
            "sla",
            "top_reasons",
        ]

    def get_top_reasons(self, contact) -> list[str]:
        return [f"{part['rule']} (+{part['points']})" for part in top_reasons(contact)]

    def get_sla(self, contact) -> str:
        return sla_state(contact)


class RejectInput(serializers.Serializer):
    reason = serializers.ChoiceField(choices=REP_REASONS)
    note = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class FeedbackInput(serializers.Serializer):
    rating = serializers.ChoiceField(choices=LeadFeedback.Rating.choices)
    reason = serializers.ChoiceField(choices=[("", "—"), *REP_REASONS], required=False, default="")
    note = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")


class OutcomeInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[("opportunity", "Opportunity"), ("won", "Won"), ("lost", "Lost")])
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class ReassignInput(serializers.Serializer):
    rep = serializers.SlugRelatedField(
        slug_field="username",
        queryset=get_user_model().objects.filter(is_active=True),
        help_text="The username of the rep who takes the lead.",
    )


class HandoffResultOutput(serializers.Serializer):
    contact = serializers.IntegerField()
    lifecycle_stage = serializers.CharField()
    owner = serializers.CharField(allow_null=True)
    detail = serializers.CharField()


@extend_schema(
    parameters=[
        OpenApiParameter(
            "waiting_hours",
            {"type": "number", "minimum": 0, "maximum": MAX_WAITING_HOURS},
            description="Waiting at least this many hours.",
        )
    ]
)
class QueueView(generics.ListAPIView):
    """MQLs waiting for sales, best score first; the same filters as the queue page."""

    permission_classes = [IsSales]
    serializer_class = QueueItemOutput
    # django-filter's backend answers a bad filter with a 400 (not ignored) and puts the
    # filters in the schema.
    filter_backends = [DjangoFilterBackend]
    filterset_class = QueueFilter

    def get_queryset(self):
        return mql_queue()

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        scores_explain(getattr(contact, "score", None) for contact in page or [])  # top reasons, a page at once
        return page


RESPONSES = {
    200: HandoffResultOutput,
    400: OpenApiResponse(description="Invalid input, with field messages."),
    403: OpenApiResponse(description="The lead belongs to another rep."),
    409: OpenApiResponse(description="The lead was already handled (e.g. another rep accepted it)."),
}


class LeadActionView(APIView):
    permission_classes = [IsSales]
    input_serializer = None
    done = ""

    def post(self, request, pk: int):
        contact = get_object_or_404(Contact, pk=pk)
        data = {}
        if self.input_serializer:
            serializer = self.input_serializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        try:
            self.act(contact.pk, request.user, data)
        except handoff.NotAllowed as error:
            return Response({"detail": str(error)}, status=status.HTTP_403_FORBIDDEN)
        except handoff.HandoffError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        contact.refresh_from_db()
        return Response(
            {
                "contact": contact.pk,
                "lifecycle_stage": contact.lifecycle_stage,
                "owner": contact.owner.username if contact.owner else None,
                "detail": self.done,
            }
        )


@extend_schema(request=None, responses=RESPONSES)
class AcceptView(LeadActionView):
    done = "Accepted: the lead is now a sales-qualified lead owned by you."

    def act(self, pk, user, data):
        handoff.lead_accept(contact_id=pk, user=user)


@extend_schema(request=RejectInput, responses=RESPONSES)
class RejectView(LeadActionView):
    input_serializer = RejectInput
    done = "Rejected and handed back to marketing."

    def act(self, pk, user, data):
        handoff.lead_reject(contact_id=pk, user=user, reason=data["reason"], note=data["note"])


@extend_schema(request=None, responses=RESPONSES)
class ClaimView(LeadActionView):
    done = "Claimed."

    def act(self, pk, user, data):
        handoff.lead_claim(contact_id=pk, user=user)


@extend_schema(request=FeedbackInput, responses=RESPONSES)
class FeedbackView(LeadActionView):
    input_serializer = FeedbackInput
    done = "Feedback recorded."

    def act(self, pk, user, data):
        handoff.feedback_record(contact_id=pk, user=user, **data)


@extend_schema(request=OutcomeInput, responses=RESPONSES)
class OutcomeView(LeadActionView):
    input_serializer = OutcomeInput
    done = "Outcome recorded."

    def act(self, pk, user, data):
        handoff.outcome_record(
            contact_id=pk, user=user, kind=data["kind"], note=data["note"], source=Outcome.Source.API
        )


@extend_schema(request=ReassignInput, responses=RESPONSES)
class ReassignView(LeadActionView):
    """Managers and admins only."""

    input_serializer = ReassignInput
    done = "Reassigned."

    def act(self, pk, user, data):
        handoff.lead_reassign(contact_id=pk, user=user, rep=data["rep"])
