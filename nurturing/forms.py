import json

from django import forms

from leads.models import LifecycleStage, RejectReason

from .models import Sequence, SequenceStep, StepVariant
from .sequences import merge_field_errors

GRADES = [("A", "A"), ("B", "B"), ("C", "C"), ("D", "D")]
WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]


class ConditionsField(forms.CharField):
    """JSON list of {"field", "operator", "value"} tests, as scoring's fit rules use."""

    def to_python(self, value):
        value = (value or "").strip()
        if not value:
            return []
        try:
            conditions = json.loads(value)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(f"Not valid JSON: {error.msg}.") from None
        if not isinstance(conditions, list) or not all(
            isinstance(c, dict) and {"field", "operator"} <= set(c) for c in conditions
        ):
            raise forms.ValidationError(
                'Write a list like [{"field": "contact.country", "operator": "equals", "value": "Germany"}].'
            )
        return conditions

    def prepare_value(self, value):
        return json.dumps(value) if isinstance(value, list) else value


class SequenceForm(forms.ModelForm):
    entry_stages = forms.MultipleChoiceField(
        choices=LifecycleStage.choices, required=False, widget=forms.CheckboxSelectMultiple, label="Lifecycle stages"
    )
    entry_grades = forms.MultipleChoiceField(
        choices=GRADES, required=False, widget=forms.CheckboxSelectMultiple, label="Fit grades"
    )
    entry_sources = forms.CharField(required=False, label="Lead sources", help_text="Comma-separated; empty: any.")
    entry_conditions = ConditionsField(
        required=False, label="Attribute conditions (JSON)", widget=forms.Textarea(attrs={"rows": 3})
    )
    entry_reject_reason = forms.ChoiceField(
        choices=[("", "—"), *RejectReason.choices], required=False, label="Rejected by sales with reason"
    )

    class Meta:
        model = Sequence
        fields = [
            "name",
            "description",
            "entry",
            "entry_stages",
            "entry_min_score",
            "entry_max_score",
            "entry_grades",
            "entry_sources",
            "entry_conditions",
            "entry_reject_reason",
            "exit_on_mql",
            "exit_on_sql",
            "exit_on_reply",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["entry_sources"] = ", ".join(self.instance.entry_sources or [])

    def clean_entry_sources(self):
        return [s.strip() for s in self.cleaned_data["entry_sources"].split(",") if s.strip()]

    def clean(self):
        data = super().clean()
        if data.get("entry") == Sequence.Entry.EVENT and not data.get("entry_reject_reason"):
            self.add_error("entry_reject_reason", "An event sequence needs the rejection reason that starts it.")
        low, high = data.get("entry_min_score"), data.get("entry_max_score")
        if low is not None and high is not None and low > high:
            self.add_error("entry_max_score", "The maximum score is below the minimum.")
        return data


class StepForm(forms.ModelForm):
    send_weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS, coerce=int, required=False, widget=forms.CheckboxSelectMultiple, label="Send on"
    )
    skip_condition = ConditionsField(
        required=False, label="Skip when (JSON, one condition in a list)", widget=forms.Textarea(attrs={"rows": 2})
    )

    class Meta:
        model = SequenceStep
        fields = [
            "position",
            "delay_amount",
            "delay_unit",
            "send_weekdays",
            "send_hour_from",
            "send_hour_to",
            "subject",
            "body",
            "skip_condition",
        ]
        widgets = {"body": forms.Textarea(attrs={"rows": 10})}

    def __init__(self, *args, sequence: Sequence, **kwargs):
        super().__init__(*args, **kwargs)
        self.sequence = sequence
        if self.instance.skip_condition:
            self.initial["skip_condition"] = [self.instance.skip_condition]

    def clean_skip_condition(self):
        conditions = self.cleaned_data["skip_condition"]
        if len(conditions) > 1:
            raise forms.ValidationError("Give one condition.")
        return conditions[0] if conditions else None

    def clean_position(self):
        position = self.cleaned_data["position"]
        if self.sequence.steps.filter(position=position).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("Another step already has this position.")
        return position

    def clean(self):
        data = super().clean()
        for field in ("subject", "body"):
            for error in merge_field_errors(data.get(field) or ""):
                self.add_error(field, error)
        low, high = data.get("send_hour_from"), data.get("send_hour_to")
        if low is not None and not 0 <= low <= 23:
            self.add_error("send_hour_from", "An hour from 0 to 23.")
        if high is not None and not 1 <= high <= 24:
            self.add_error("send_hour_to", "An hour from 1 to 24.")
        if low is not None and high is not None and low >= high:
            self.add_error("send_hour_to", "The window must end after it starts.")
        return data


class VariantForm(forms.ModelForm):
    class Meta:
        model = StepVariant
        fields = ["label", "subject", "body", "weight"]
        widgets = {"body": forms.Textarea(attrs={"rows": 8})}

    def __init__(self, *args, step: SequenceStep, **kwargs):
        super().__init__(*args, **kwargs)
        self.step = step

    def clean_label(self):
        label = self.cleaned_data["label"].strip()
        if label.upper() == "A":
            raise forms.ValidationError("“A” is the step itself; name the variant B, C, …")
        if self.step.variants.filter(label=label).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError("This step already has a variant with this label.")
        return label

    def clean(self):
        data = super().clean()
        for field in ("subject", "body"):
            for error in merge_field_errors(data.get(field) or ""):
                self.add_error(field, error)
        return data
