import math

from django import forms
from django.core.exceptions import ValidationError

from leads.models import CustomAttribute

from .models import EngagementRule, FitRule, ModelVersion, MqlLevel
from .selectors import PROFILE_ACCOUNT_FIELDS, PROFILE_CONTACT_FIELDS

LIST_OPERATORS = {"one_of", "contains", "starts_with", "domain_in"}
NO_VALUE_OPERATORS = {"is_set", "is_empty", "free_mail"}
MOST_LISTED = 200  # values in one rule's list: a rule is read by people, and tested per contact
RANGE_LIMIT = 1e12  # beyond it a range end is no company's size or revenue (and floats round)


def fit_field_choices() -> list[tuple[str, str]]:
    return [
        ("email", "Email address"),
        *[(f"contact.{f}", f"Contact: {f.replace('_', ' ')}") for f in PROFILE_CONTACT_FIELDS],
        *[(f"account.{f}", f"Account: {f.replace('_', ' ')}") for f in PROFILE_ACCOUNT_FIELDS],
        *[(f"attribute.{a.key}", f"Attribute: {a.label}") for a in CustomAttribute.objects.order_by("label")],
    ]


class FitRuleForm(forms.ModelForm):
    """The value is typed as text: comma-separated for lists, "min, max" for ranges."""

    value_text = forms.CharField(
        required=False,
        max_length=5000,
        label="Value",
        help_text="One of / contains / starts with / domains: comma-separated. "
        "Between: min, max (leave a side empty for open).",
    )

    class Meta:
        model = FitRule
        fields = ["name", "field", "operator", "points"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["field"] = forms.ChoiceField(choices=fit_field_choices())
        if self.instance.pk and self.instance.value is not None:
            value = self.instance.value
            self.fields["value_text"].initial = ", ".join(map(str, value)) if isinstance(value, list) else value

    def clean(self):
        data = super().clean()
        operator, text = data.get("operator"), (data.get("value_text") or "").strip()
        if operator in NO_VALUE_OPERATORS:
            self.instance.value = None
        elif not text:
            self.add_error("value_text", "This operator needs a value.")
        elif operator == "between":
            self.instance.value = self._range(text)
        elif operator in LIST_OPERATORS:
            self.instance.value = [part.strip() for part in text.split(",") if part.strip()]
            if len(self.instance.value) > MOST_LISTED:
                self.add_error("value_text", f"List at most {MOST_LISTED} values in one rule.")
        else:
            self.instance.value = text
        if data.get("points") == 0:
            self.add_error("points", "A rule must give or take points.")
        return data

    def _range(self, text: str):
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 2:
            self.add_error("value_text", 'Write a range as "min, max", e.g. "200, 5000" or "1000," for at least 1000.')
            return None
        try:
            bounds = [float(p) if p else None for p in parts]
        except ValueError:
            self.add_error("value_text", "Both ends of the range must be numbers.")
            return None
        if any(b is not None and not (math.isfinite(b) and abs(b) <= RANGE_LIMIT) for b in bounds):
            self.add_error(
                "value_text", f"Range ends must be numbers between {-RANGE_LIMIT:,.0f} and {RANGE_LIMIT:,.0f}."
            )
            return None
        if bounds == [None, None] or (None not in bounds and bounds[0] > bounds[1]):
            self.add_error("value_text", "Give at least one end, and the minimum no larger than the maximum.")
        return [int(b) if b is not None and b.is_integer() else b for b in bounds]


class EngagementRuleForm(forms.ModelForm):
    class Meta:
        model = EngagementRule
        fields = [
            "name",
            "activity_type",
            "property_name",
            "property_operator",
            "property_value",
            "points",
            "cap",
            "window_days",
            "half_life_days",
        ]

    def clean(self):
        # A window and a half-life together: the model's constraint says so, with its own message.
        data = super().clean()
        if data.get("points") == 0:
            self.add_error("points", "A rule must give or take points.")
        has_filter = [bool(data.get(f)) for f in ("property_name", "property_operator", "property_value")]
        if any(has_filter) and not all(has_filter):
            raise ValidationError("A property filter needs a property name, an operator and a value.")
        return data


class MqlLevelForm(forms.ModelForm):
    class Meta:
        model = MqlLevel
        fields = ["name", "min_score", "min_fit_grade"]

    def __init__(self, *args, version: ModelVersion, **kwargs):
        super().__init__(*args, **kwargs)
        self.version = version

    def clean_name(self):
        name = self.cleaned_data["name"].strip().lower()
        clash = self.version.mql_levels.filter(name=name).exclude(pk=self.instance.pk)
        if clash.exists():
            raise ValidationError("This model already has a level with this name.")
        return name

    def clean_min_score(self):
        score, version = self.cleaned_data["min_score"], self.version
        highest = version.fit_cap + version.engagement_cap
        if score > highest:
            raise ValidationError(
                f"No contact can score more than {highest} (fit cap {version.fit_cap} + engagement cap "
                f"{version.engagement_cap}): a level above that would never qualify anyone."
            )
        return score


class VersionSettingsForm(forms.ModelForm):
    class Meta:
        model = ModelVersion
        fields = ["note", "fit_cap", "engagement_cap", "grade_a_min", "grade_b_min", "grade_c_min", "mqa_threshold"]

    def clean(self):
        data = super().clean()
        grades = [data.get("grade_a_min"), data.get("grade_b_min"), data.get("grade_c_min")]
        if None not in grades and not grades[0] > grades[1] > grades[2]:
            raise ValidationError("Grade thresholds must fall: A above B above C.")
        fit_cap, engagement_cap = data.get("fit_cap"), data.get("engagement_cap")
        if None not in (fit_cap, grades[0]) and grades[0] > fit_cap:
            self.add_error("grade_a_min", f"Above the fit cap ({fit_cap}): no contact could be grade A.")
        if None not in (fit_cap, engagement_cap):
            self._levels_reachable(fit_cap + engagement_cap)
        return data

    def _levels_reachable(self, highest: int) -> None:
        """Lowering the caps must not strand a level no contact could reach any more."""
        if self.instance.pk is None:
            return  # a version being created has no levels yet
        above = self.instance.mql_levels.filter(min_score__gt=highest).order_by("-min_score").first()
        if above is not None:
            self.add_error(
                None,
                f"No contact could reach the level “{above.name}” (≥ {above.min_score}) with caps adding up to "
                f"{highest}: lower the level first, or keep the caps.",
            )


class SuggestionForm(forms.Form):
    target_kind = forms.ChoiceField(
        label="Choose the MQL threshold by",
        choices=[
            ("precision", "Target precision — the share of MQLs that should turn out good"),
            ("volume", "Target MQL volume — the share of leads to pass to sales"),
        ],
        initial="precision",
        widget=forms.RadioSelect,
    )
    target_value = forms.DecimalField(
        label="Target (%)",
        min_value=1,
        max_value=99,
        decimal_places=1,
        initial=80,
        help_text="E.g. 80 for 80% precision, or 30 to flag 30% of leads.",
    )
    max_rules = forms.IntegerField(
        label="At most this many rules", min_value=3, max_value=60, initial=25, help_text="Fewer rules read easier."
    )
    points_to_double = forms.IntegerField(
        label="Points that double the odds",
        min_value=5,
        max_value=100,
        initial=20,
        help_text="The scale of the points: a rule worth this many points doubles a lead's odds of a good outcome.",
    )
