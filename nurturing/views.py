"""Marketer pages for nurture sequences.

The views that change a sequence are atomic: the change and its audit entry commit together.
"""

import uuid

from django.contrib import messages
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from leads.audit import audit_record, form_changes
from leads.decorators import role_required
from leads.models import Contact
from leads.roles import MARKETING

from . import selectors, sequences
from .forms import SequenceForm, StepForm, VariantForm
from .models import Sequence, SequenceStep, StepVariant
from .services import email_enqueue_message


@role_required(MARKETING)
def sequence_list(request):
    rows = Sequence.objects.annotate(
        step_count=Count("steps", distinct=True),
        active_count=Count("enrolments", filter=Q(enrolments__status="active"), distinct=True),
    )
    return render(request, "nurturing/sequence_list.html", {"rows": [(s, selectors.sequence_stats(s)) for s in rows]})


@role_required(MARKETING)
@transaction.atomic
def sequence_edit(request, pk: int | None = None):
    sequence = get_object_or_404(Sequence, pk=pk) if pk else None
    form = SequenceForm(request.POST or None, instance=sequence)
    if request.method == "POST" and form.is_valid():
        before, after = form_changes(form)
        sequence = form.save()
        audit_record(
            actor=request.user,
            action="sequence.edit" if pk else "sequence.create",
            target=sequence,
            before=before,
            after=after,
        )
        messages.success(request, f"Saved “{sequence}”.")
        return redirect("nurturing:sequence_detail", pk=sequence.pk)
    return render(request, "nurturing/sequence_form.html", {"form": form, "sequence": sequence})


@role_required(MARKETING)
def sequence_detail(request, pk: int):
    sequence = get_object_or_404(Sequence, pk=pk)
    return render(
        request,
        "nurturing/sequence_detail.html",
        {
            "sequence": sequence,
            "steps": sequence.steps.prefetch_related("variants"),
            "stats": selectors.sequence_stats(sequence),
            "step_stats": selectors.step_stats(sequence),
            "became_mql": selectors.mql_after_enrolment(sequence),
            "daily": selectors.daily_results(sequence),
            "segment_size": sequences.segment_contacts(sequence).count() if sequence.entry == "segment" else None,
        },
    )


@require_POST
@role_required(MARKETING)
@transaction.atomic
def sequence_status(request, pk: int, status: str):
    sequence = get_object_or_404(Sequence, pk=pk)
    if status == Sequence.Status.ACTIVE and not sequence.steps.exists():
        messages.error(request, "Add at least one step before activating the sequence.")
    else:
        before = sequence.status
        sequence.status = status
        sequence.save(update_fields=["status", "updated_at"])
        audit_record(
            actor=request.user,
            action="sequence.status",
            target=sequence,
            before={"status": before},
            after={"status": status},
        )
        messages.success(request, f"“{sequence}” is now {sequence.get_status_display().lower()}.")
    return redirect("nurturing:sequence_detail", pk=sequence.pk)


@role_required(MARKETING)
@transaction.atomic
def step_edit(request, pk: int, step_pk: int | None = None):
    sequence = get_object_or_404(Sequence, pk=pk)
    step = get_object_or_404(sequence.steps, pk=step_pk) if step_pk else None
    initial = {"position": (sequence.steps.count() + 1)} if step is None else None
    form = StepForm(request.POST or None, instance=step, sequence=sequence, initial=initial)
    if request.method == "POST" and form.is_valid():
        step = form.save(commit=False)
        step.sequence = sequence
        step.save()
        audit_record(actor=request.user, action="sequence.step_save", target=sequence, **_step_changes(form, step))
        messages.success(request, f"Saved step {step.position}.")
        return redirect("nurturing:sequence_detail", pk=sequence.pk)
    return render(request, "nurturing/step_form.html", {"form": form, "sequence": sequence, "step": step})


@require_POST
@role_required(MARKETING)
@transaction.atomic
def step_delete(request, pk: int, step_pk: int):
    step = get_object_or_404(SequenceStep.objects.select_related("sequence"), pk=step_pk, sequence_id=pk)
    audit_record(
        actor=request.user,
        action="sequence.step_delete",
        target=step.sequence,
        before={"step": step.position, "subject": step.subject},
    )
    step.delete()
    messages.success(request, f"Removed step {step.position}.")
    return redirect("nurturing:sequence_detail", pk=pk)


@role_required(MARKETING)
@transaction.atomic
def variant_edit(request, pk: int, step_pk: int, variant_pk: int | None = None):
    step = get_object_or_404(SequenceStep.objects.select_related("sequence"), pk=step_pk, sequence_id=pk)
    variant = get_object_or_404(step.variants, pk=variant_pk) if variant_pk else None
    form = VariantForm(request.POST or None, instance=variant, step=step)
    if request.method == "POST" and form.is_valid():
        variant = form.save(commit=False)
        variant.step = step
        variant.save()
        audit_record(
            actor=request.user,
            action="sequence.variant_save",
            target=step.sequence,
            **_step_changes(form, step, variant.label),
        )
        messages.success(request, f"Saved variant {variant.label}.")
        return redirect("nurturing:sequence_detail", pk=pk)
    return render(request, "nurturing/variant_form.html", {"form": form, "step": step, "variant": variant})


@require_POST
@role_required(MARKETING)
@transaction.atomic
def variant_delete(request, pk: int, step_pk: int, variant_pk: int):
    variant = get_object_or_404(
        StepVariant.objects.select_related("step__sequence"), pk=variant_pk, step_id=step_pk, step__sequence_id=pk
    )
    audit_record(
        actor=request.user,
        action="sequence.variant_delete",
        target=variant.step.sequence,
        before={"step": variant.step.position, "variant": variant.label},
    )
    variant.delete()
    return redirect("nurturing:sequence_detail", pk=pk)


def _step_changes(form, step: SequenceStep, variant: str = "") -> dict:
    """An audit entry's before/after for a step (or variant) edit, naming which one changed."""
    before, after = form_changes(form)
    which = {"step": step.position} | ({"variant": variant} if variant else {})
    return {"before": which | before, "after": which | after}


def _preview_contact(request, sequence: Sequence) -> Contact | None:
    contact_id = request.GET.get("contact") or request.POST.get("contact")
    if contact_id and str(contact_id).isdigit():
        return Contact.objects.select_related("account").filter(pk=contact_id).first()
    chosen = (
        sequences.segment_contacts(sequence) if sequence.entry == "segment" else Contact.objects.exclude(email=None)
    )
    return chosen.select_related("account").order_by("id").first()


@role_required(MARKETING)
def step_preview(request, pk: int, step_pk: int):
    step = get_object_or_404(SequenceStep.objects.select_related("sequence"), pk=step_pk, sequence_id=pk)
    contact = _preview_contact(request, step.sequence)
    versions = []
    if contact:
        versions = [
            (label, sequences.render_message(subject, body, contact))
            for label, subject, body in [("A", step.subject, step.body)]
            + [(v.label, v.subject, v.body) for v in step.variants.all()]
        ]
    return render(request, "nurturing/step_preview.html", {"step": step, "contact": contact, "versions": versions})


@require_POST
@role_required(MARKETING)
def step_send_test(request, pk: int, step_pk: int):
    """Send the step, rendered for the chosen contact, to the marketer (not to the contact)."""
    step = get_object_or_404(SequenceStep.objects.select_related("sequence"), pk=step_pk, sequence_id=pk)
    contact = _preview_contact(request, step.sequence)
    if not request.user.email:
        messages.error(request, "Your user has no email address to send the test to.")
    elif contact is None:
        messages.error(request, "There is no contact to render the test for.")
    else:
        rendered = sequences.render_message(step.subject, step.body, contact)
        rendered["subject"] = f"[TEST] {rendered['subject']}"
        email_enqueue_message(key=f"test:{step.pk}:{uuid.uuid4().hex}", to=request.user.email, **rendered)
        messages.success(request, f"Test sent to {request.user.email}, rendered for {contact}.")
    preview = reverse("nurturing:step_preview", args=[pk, step_pk])
    return redirect(f"{preview}?contact={contact.pk}" if contact else preview)


@require_POST
@role_required(MARKETING)
def contact_enrol(request, pk: int):
    """Manual enrolment from a contact's page."""
    sequence = get_object_or_404(Sequence, pk=request.POST.get("sequence") or 0)
    contact = get_object_or_404(Contact, pk=pk)
    if sequences.enrol_contact(sequence=sequence, contact=contact, source="manual"):
        messages.success(request, f"{contact} enrolled in “{sequence}”.")
    else:
        messages.error(request, f"{contact} is already in “{sequence}”, has no email, or opted out.")
    return redirect(contact.get_absolute_url())
