"""Scores and their explanations over the API (read-only)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from leads.models import Contact

from .models import ContactScore, ScoreChange
from .selectors import scores_explain
from .serializers import ContactScoreOutput, ScoreChangeOutput


class ContactScoreView(APIView):
    @extend_schema(
        responses=ContactScoreOutput,
        description="The contact's score and every rule's contribution; the contributions add up to the total exactly.",
    )
    def get(self, request, contact_id: int):
        score = get_object_or_404(ContactScore.objects.select_related("version__scoring_model"), contact_id=contact_id)
        scores_explain([score])
        return Response(ContactScoreOutput(score).data)


class ContactScoreHistoryView(ListAPIView):
    serializer_class = ScoreChangeOutput
    filter_backends = []

    def get_queryset(self):
        contact = get_object_or_404(Contact, pk=self.kwargs["contact_id"])
        return ScoreChange.objects.filter(contact=contact).order_by("-changed_at", "-id")
