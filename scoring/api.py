"""Scores and their explanations over the API (read-only)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from leads.models import Contact

from .models import ContactScore
from .selectors import score_history, scores_explain
from .serializers import ContactScoreOutput, ScoreChangeOutput


class ContactScoreView(APIView):
    @extend_schema(
        responses=ContactScoreOutput,
        description="The contact's score and every rule's contribution; the contributions add up to the total exactly.",
    )
    def get(self, request, contact_id: int):
        score = ContactScore.objects.filter(contact_id=contact_id).first()  # its version: scores_explain
        if score is None:  # which 404: the contact is only looked up when it has no score
            if not Contact.objects.filter(pk=contact_id).exists():
                raise NotFound("No contact with this id.")
            raise NotFound("This contact has no score yet: a worker scores it within seconds of a save or an activity.")
        scores_explain([score])
        return Response(ContactScoreOutput(score).data)


class ContactScoreHistoryView(ListAPIView):
    serializer_class = ScoreChangeOutput
    filter_backends = []

    def get_queryset(self):
        contact = get_object_or_404(Contact, pk=self.kwargs["contact_id"])
        changes = score_history(contact.pk)
        if changes:  # the oldest is the contact's first score, from none (stored as 0), as its page says
            changes[-1].old_total = None
        return changes
