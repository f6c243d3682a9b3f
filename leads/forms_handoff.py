from django import forms

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
