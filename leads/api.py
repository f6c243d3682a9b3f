"""REST API for integrations: accounts, contacts, activities, bulk event ingest."""

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from scoring.selectors import contact_score_summary

from . import services
from .filters import AccountFilter, ActivityFilter, ContactFilter
from .models import Account, Activity, ActivityType, Contact
from .permissions import IsMarketing
from .schema import RequiredBodySchema
from .serializers import (
    AccountInput,
    AccountOutput,
    ActivityOutput,
    ActivityTypeSerializer,
    BulkIngestOutput,
    ContactInput,
    ContactOutput,
    IngestEventInput,
    IngestResultOutput,
    IngestScoredResultOutput,
    IngestScoreOutput,
)


class AccountViewSet(viewsets.ModelViewSet):
    queryset = Account.objects.annotate(contact_count=Count("contacts")).order_by("name", "id")
    filterset_class = AccountFilter
    search_fields = ["name", "domain"]
    ordering_fields = ["name", "created_at", "employee_count"]
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_serializer_class(self):
        return AccountOutput if self.request.method in ("GET", "HEAD", "OPTIONS") else AccountInput

    @extend_schema(request=AccountInput, responses={201: AccountOutput})
    def create(self, request, *args, **kwargs):
        serializer = AccountInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                account = serializer.save()
        except IntegrityError:  # another request created this domain after our check
            raise ValidationError({"domain": ["Another account already has this domain."]}) from None
        return Response(AccountOutput(account).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AccountInput, responses={200: AccountOutput})
    def partial_update(self, request, *args, **kwargs):
        serializer = AccountInput(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return Response(AccountOutput(serializer.save()).data)


class ContactViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    schema = RequiredBodySchema()
    queryset = Contact.objects.select_related("account").order_by("-created_at", "-id")
    serializer_class = ContactOutput
    filterset_class = ContactFilter
    search_fields = ["first_name", "last_name", "email", "account__name"]
    ordering_fields = ["created_at", "updated_at", "last_name"]

    @extend_schema(
        request=ContactInput,
        responses={
            201: ContactOutput,
            200: OpenApiResponse(
                ContactOutput,
                description="An existing contact with this email or external id was updated instead of duplicated.",
            ),
        },
    )
    def create(self, request):
        serializer = ContactInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        try:
            result = services.contact_upsert(changed_by=request.user, **data)
        except services.ContactConflict as error:
            raise ValidationError({"email": [str(error)]}) from error
        services.contacts_queue_rescore([result.contact.pk], reason="contact saved through the API")
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        return Response(ContactOutput(result.contact).data, status=code)

    @extend_schema(request=ContactInput, responses={200: ContactOutput})
    def partial_update(self, request, pk=None):
        contact = self.get_object()
        serializer = ContactInput(contact, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.contact_update(contact=contact, changed_by=request.user, **serializer.validated_data)
        services.contacts_queue_rescore([contact.pk], reason="contact edited through the API")
        return Response(ContactOutput(contact).data)


class ActivityTypeViewSet(mixins.ListModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    queryset = ActivityType.objects.order_by("key")
    serializer_class = ActivityTypeSerializer
    lookup_field = "key"
    pagination_class = None
    filter_backends = []

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.activity_type_create(
            key=data["key"], name=data["name"], description=data.get("description", "")
        )


class ActivityViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    queryset = Activity.objects.select_related("type").order_by("-occurred_at", "-id")
    serializer_class = ActivityOutput
    filterset_class = ActivityFilter
    ordering_fields = ["occurred_at", "received_at"]

    @extend_schema(
        request=IngestEventInput,
        parameters=[
            OpenApiParameter(
                "score",
                str,
                enum=["now"],
                description="`now`: score the contact before answering and include its score "
                "(total, grade, MQL level, lifecycle stage), e.g. to route a form submission at once. "
                "A lead this makes an MQL is handed to a rep (routing, the rep's email) by a worker right "
                "after the answer. Without it the score follows within a second, through a worker.",
            )
        ],
        responses={
            201: IngestScoredResultOutput,
            200: OpenApiResponse(
                IngestScoredResultOutput, description="Duplicate: this event was already stored; nothing changed."
            ),
        },
    )
    def create(self, request):
        serializer = IngestEventInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        score_now = request.query_params.get("score") == "now"
        [outcome] = services.activities_ingest(events=[serializer.to_event(0)], score_now=score_now)
        if outcome.status == "error":
            return Response(outcome.errors, status=status.HTTP_400_BAD_REQUEST)
        code = status.HTTP_201_CREATED if outcome.status == "created" else status.HTTP_200_OK
        answer = IngestResultOutput(outcome).data
        if score_now:
            score = contact_score_summary(outcome.contact_id)
            answer["score"] = IngestScoreOutput(score).data if score else None
        return Response(answer, status=code)


_EVENTS = {
    "type": "array",
    "items": {"$ref": "#/components/schemas/IngestEventInputRequest"},
    "minItems": 1,
    "maxItems": settings.BULK_INGEST_MAX_EVENTS,
}
# Both shapes _events_from accepts: {"events": [...]} or the bare array.
BULK_INGEST_BODY = {
    "oneOf": [{"type": "object", "properties": {"events": _EVENTS}, "required": ["events"]}, _EVENTS],
}


class BulkIngestView(APIView):
    """Up to BULK_INGEST_MAX_EVENTS events per request, each validated on its own.

    A bad event is reported with its field messages and never discards the good ones.
    """

    permission_classes = [IsMarketing]
    schema = RequiredBodySchema()

    @extend_schema(
        request={"application/json": BULK_INGEST_BODY},
        responses={
            200: BulkIngestOutput,
            400: OpenApiResponse(description="Malformed JSON, not a list, or too many events."),
        },
        description="Send up to 1,000 events. Each is reported `created`, `duplicate` or `error` "
        "(with field messages). Unknown contacts are created from the event's email.",
    )
    def post(self, request):
        raw_events = self._events_from(request.data)
        outcomes, events = {}, []
        # One validator for the whole batch: building a serializer copies its fields, which
        # cost more than validating a small event.
        validator = IngestEventInput()
        for index, raw in enumerate(raw_events):
            if not isinstance(raw, dict):
                outcomes[index] = services.IngestOutcome(
                    index, "error", errors={"event": ["Each event must be a JSON object."]}
                )
                continue
            try:
                data = validator.plain_validated_data(raw) or validator.run_validation(raw)
                events.append(IngestEventInput.event_from(data, index))
            except ValidationError as error:
                outcomes[index] = services.IngestOutcome(index, "error", errors=error.detail)
        for outcome in services.activities_ingest(events=events) if events else []:
            outcomes[outcome.index] = outcome
        results = [vars(outcomes[index]) for index in range(len(raw_events))]
        counts = {name: sum(1 for r in results if r["status"] == name) for name in ("created", "duplicate", "error")}
        # The same shape as BulkIngestOutput (the schema), built directly: it is all plain values.
        return Response({**counts, "results": results})

    @staticmethod
    def _events_from(data) -> list:
        events = data.get("events") if isinstance(data, dict) else data
        if not isinstance(events, list):
            raise ValidationError({"events": ['Send {"events": [...]} or a JSON array of events.']})
        if not events:
            raise ValidationError({"events": ["The batch is empty."]})
        limit = settings.BULK_INGEST_MAX_EVENTS
        if len(events) > limit:
            raise ValidationError({"events": [f"At most {limit} events per request; this one has {len(events)}."]})
        return events
