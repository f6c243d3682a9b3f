from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.core.validators import RegexValidator
from django.http import QueryDict
from django.utils import timezone

from .models import CampaignCost
from .reports import Period

DEFAULT_DAYS = 90
MAX_DAYS = 3 * 366
# Dates far from today are typing mistakes (year 0024), and datetimes near year 1 or 9999
# overflow when converted between time zones.
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


def _parse(text: str | None) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        return None  # the field reports it


def _within_bounds(value: date | None) -> None:
    if value is not None and not EARLIEST <= value <= LATEST:
        raise forms.ValidationError(f"Choose a date between {EARLIEST:%Y} and {LATEST:%Y}.")


class ReportFilterForm(forms.Form):
    """The report's date range (default: the last 90 days) and the deal value to try."""

    start = forms.DateField(label="From", widget=DateInput())
    end = forms.DateField(label="To", widget=DateInput())
    deal_value = forms.DecimalField(
        label="Deal value",
        required=False,
        min_value=0,
        max_digits=12,
        decimal_places=2,
    )

    def __init__(self, data=None, **kwargs):
        # Missing dates get their defaults before binding, so the form shows the range it reports on.
        data = data.copy() if data is not None else QueryDict(mutable=True)
        end = _parse(data.get("end")) or timezone.localdate()
        if not data.get("end"):
            data["end"] = end.isoformat()
        if not data.get("start"):
            data["start"] = max(end - timedelta(days=DEFAULT_DAYS - 1), EARLIEST).isoformat()
        super().__init__(data, **kwargs)
        self.fields["deal_value"].label = f"Deal value ({settings.REPORT_CURRENCY})"
        self.fields["deal_value"].widget.attrs["placeholder"] = str(settings.DEFAULT_DEAL_VALUE)

    def clean_start(self):
        _within_bounds(self.cleaned_data["start"])
        return self.cleaned_data["start"]

    def clean_end(self):
        _within_bounds(self.cleaned_data["end"])
        return self.cleaned_data["end"]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        start, end = data["start"], data["end"]
        if end < start:
            self.add_error("end", "The range ends before it starts.")
        elif (end - start).days + 1 > MAX_DAYS:
            self.add_error("start", "Choose a range of at most three years.")
        if data.get("deal_value") is None:
            data["deal_value"] = settings.DEFAULT_DEAL_VALUE
        return data

    def period(self) -> Period:
        return Period(self.cleaned_data["start"], self.cleaned_data["end"])


class CampaignCostForm(forms.ModelForm):
    currency = forms.CharField(
        max_length=3,
        validators=[RegexValidator(r"^[A-Za-z]{3}$", "Use a three-letter currency code, e.g. EUR.")],
        help_text="ISO 4217 code, e.g. EUR.",
    )
    amount = forms.DecimalField(min_value=0, max_digits=12, decimal_places=2)

    class Meta:
        model = CampaignCost
        fields = ["campaign", "name", "period_start", "period_end", "amount", "currency"]
        widgets = {"period_start": DateInput(), "period_end": DateInput()}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk:
            self.fields["currency"].initial = settings.REPORT_CURRENCY

    def clean_campaign(self):
        campaign = self.cleaned_data["campaign"].strip()
        if not campaign:
            raise forms.ValidationError("Enter the campaign key.")
        return campaign

    def clean_period_start(self):
        _within_bounds(self.cleaned_data["period_start"])
        return self.cleaned_data["period_start"]

    def clean_period_end(self):
        _within_bounds(self.cleaned_data["period_end"])
        return self.cleaned_data["period_end"]

    def clean(self):
        data = super().clean()
        start, end = data.get("period_start"), data.get("period_end")
        if start and end and end < start:
            self.add_error("period_end", "The period ends before it starts.")
        return data
