"""Sales reps' pages: the MQL queue and the hand-off actions (plain POST forms; htmx swaps a row)."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from . import handoff
from .decorators import role_required
from .forms_handoff import FeedbackForm, OutcomeForm, ReassignForm, RejectForm, RowRejectFields
from .models import Contact
from .queue import QueueFilter, mql_queue, queue_page, queue_views, sla_state, top_reasons
from .roles import SALES
from .templatetags.people import person


def queue_row(
    contact: Contact,
    user,
    *,
    notice: str = "",
    error: str = "",
    reject_fields: RowRejectFields | None = None,
    reject_form: RejectForm | None = None,
) -> dict:
    """What a queue row shows; `reject_fields` rendered once for a page of rows, or the row's
    own `reject_form` after a reject it refused."""
    if reject_form is not None:
        reject = RowRejectFields.of_form(reject_form)
    else:
        reject = (reject_fields or RowRejectFields()).for_contact(contact.pk)
    return {
        "contact": contact,
        "reasons": top_reasons(contact),
        "sla": sla_state(contact),
        "can_act": handoff.can_act_on(user, contact),
        "reject": reject,
        "notice": notice,
        "error": error,
    }


@role_required(SALES)
def queue(request):
    filterset = QueueFilter(request.GET or None, queryset=mql_queue())
    contacts = filterset.qs if filterset.is_bound else mql_queue()
    page = queue_page(contacts, request.GET.get("page"))
    reject_fields = RowRejectFields()
    rows = [queue_row(contact, request.user, reject_fields=reject_fields) for contact in page]
    return render(
        request,
        "leads/queue.html",
        {"filter": filterset, "page": page, "rows": rows, "views": queue_views(request.user, request.GET)},
    )


@require_POST
@role_required(SALES)
def lead_action(request, pk: int, action: str):
    contact = get_object_or_404(Contact, pk=pk)
    if not handoff.can_act_on(request.user, contact):
        raise PermissionDenied("This lead belongs to another rep.")
    try:
        notice = _perform(request, contact, action)
    except handoff.NotAllowed as error:
        raise PermissionDenied(str(error)) from error
    except handoff.HandoffError as error:
        refused = RejectForm(request.POST, prefix=f"lead{contact.pk}") if action == "reject" else None
        return _respond(request, contact, error=str(error), reject_form=refused)
    return _respond(request, contact, notice=notice)


def _perform(request, contact: Contact, action: str) -> str:
    """Carry out the action through its service; returns the message for the rep."""
    if action == "accept":
        handoff.lead_accept(contact_id=contact.pk, user=request.user)
        return "Accepted: it is your sales-qualified lead now."
    if action == "claim":
        handoff.lead_claim(contact_id=contact.pk, user=request.user)
        return "Claimed: it is yours now."
    if action == "reject":
        form = RejectForm(request.POST, prefix=f"lead{contact.pk}")
        if not form.is_valid():
            raise handoff.HandoffError(" ".join(m for errors in form.errors.values() for m in errors))
        handoff.lead_reject(
            contact_id=contact.pk, user=request.user, reason=form.cleaned_data["reason"], note=form.cleaned_data["note"]
        )
        return "Rejected and handed back to marketing."
    if action == "feedback":
        form = FeedbackForm(request.POST)
        if not form.is_valid():
            raise handoff.HandoffError("Rate the lead good or bad.")
        handoff.feedback_record(contact_id=contact.pk, user=request.user, **form.cleaned_data)
        return "Thanks: your feedback tunes the scoring."
    if action == "reassign":
        form = ReassignForm(request.POST)
        if not form.is_valid():
            raise handoff.HandoffError("Choose the rep to reassign the lead to.")
        handoff.lead_reassign(contact_id=contact.pk, user=request.user, rep=form.cleaned_data["rep"])
        return f"Reassigned to {person(form.cleaned_data['rep'])}."
    if action == "outcome":
        form = OutcomeForm(request.POST)
        if not form.is_valid():
            raise handoff.HandoffError("Choose an outcome.")
        handoff.outcome_record(contact_id=contact.pk, user=request.user, **form.cleaned_data)
        return "Outcome recorded."
    raise handoff.HandoffError("Unknown action.")


def _respond(request, contact: Contact, *, notice: str = "", error: str = "", reject_form: RejectForm | None = None):
    if request.htmx and request.POST.get("from") == "queue":
        contact = mql_queue().filter(pk=contact.pk).first() or Contact.objects.select_related("account").get(
            pk=contact.pk
        )
        row = queue_row(contact, request.user, notice=notice, error=error, reject_form=reject_form)
        response = render(request, "leads/_queue_row.html", {"row": row})
        # The lead may have left the queue: the page counts its leads again.
        return trigger_client_event(response, "queue-changed") if notice else response
    (messages.error if error else messages.success)(request, error or notice)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = contact.get_absolute_url()
    return redirect(target)
