from django import forms
from django.utils.safestring import mark_safe

from .models import LeadFeedback, Outcome, RejectReason
from .templatetags.people import person

REP_REASONS = [(value, label) for value, label in RejectReason.choices if value != RejectReason.SLA_EXPIRED]


class RejectForm(forms.Form):
    # No default: a reject without a chosen reason must not disqualify the lead by accident.
    reason = forms.ChoiceField(choices=[("", "— reason —"), *REP_REASONS])
    note = forms.CharField(required=False, max_length=1000, widget=forms.TextInput(attrs={"placeholder": "Note"}))

    def clean(self):
        data = super().clean()
        if data.get("reason") == RejectReason.OTHER and not data.get("note", "").strip():
            self.add_error("note", "Say why when the reason is “Other”.")
        return data


# The queue renders the reject form's fields once per page under this prefix, then gives
# each row a copy with its own (RowRejectFields).
_ROW_PREFIX_PLACEHOLDER = "leadPK"


class RowRejectFields:
    """The unbound reject fields of many queue rows. Django renders a widget through its
    templates: these two cost a row 1.3 ms, a third of the queue page's time. Rendered once,
    each row's copy differs only in its prefix (`lead<contact id>`), as the form renders it."""

    FIELDS = ("reason", "note")

    def __init__(self):
        form = RejectForm(prefix=_ROW_PREFIX_PLACEHOLDER)
        self.rendered = {name: str(form[name]) for name in self.FIELDS}

    def for_contact(self, contact_pk: int) -> dict:
        """{field: its HTML, field_id: the id its label points to}."""
        prefix = f"lead{int(contact_pk)}"
        fields = {
            # Safe: Django's own escaped output with an integer put in place of the placeholder.
            name: mark_safe(html.replace(f"{_ROW_PREFIX_PLACEHOLDER}-", f"{prefix}-"))
            for name, html in self.rendered.items()
        }
        return {**fields, **{f"{name}_id": f"id_{prefix}-{name}" for name in self.FIELDS}}

    @classmethod
    def of_form(cls, form: RejectForm) -> dict:
        """One row's fields from its own form, bound after an error: what the rep chose stays."""
        return {
            **{name: str(form[name]) for name in cls.FIELDS},
            **{f"{name}_id": form[name].id_for_label for name in cls.FIELDS},
        }


class FeedbackForm(forms.Form):
    rating = forms.ChoiceField(choices=LeadFeedback.Rating.choices, widget=forms.RadioSelect)
    reason = forms.ChoiceField(choices=[("", "— reason (optional) —"), *REP_REASONS], required=False)
    note = forms.CharField(required=False, max_length=1000)


class ReassignForm(forms.Form):
    rep = forms.ModelChoiceField(queryset=None, label="Reassign to", empty_label="— choose a rep —")

    def __init__(self, *args, **kwargs):
        from .queue import sales_reps

        super().__init__(*args, **kwargs)
        self.fields["rep"].queryset = sales_reps()
        self.fields["rep"].label_from_instance = person  # names as on every other page


class OutcomeForm(forms.Form):
    kind = forms.ChoiceField(
        choices=[
            (k, label)
            for k, label in Outcome.Kind.choices
            if k in (Outcome.Kind.OPPORTUNITY, Outcome.Kind.WON, Outcome.Kind.LOST)
        ]
    )
    note = forms.CharField(required=False, max_length=500)
