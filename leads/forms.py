import re

from django import forms
from django.conf import settings

from .importing import target_choices
from .models import ActivityType, CustomAttribute, LifecycleStage

ACTIVITY_KEY = re.compile(r"[a-z][a-z0-9_]*")


class ContactSearchForm(forms.Form):
    q = forms.CharField(
        required=False, label="Search", widget=forms.TextInput(attrs={"placeholder": "Name, email or company"})
    )
    stage = forms.ChoiceField(required=False, choices=[("", "Any stage"), *LifecycleStage.choices])


class ActivityTypeForm(forms.ModelForm):
    class Meta:
        model = ActivityType
        fields = ["key", "name", "description"]
        help_texts = {"key": "Lower case letters, digits and underscores; used by the API (e.g. partner_referral)."}

    def clean_key(self):
        key = self.cleaned_data["key"]
        if not ACTIVITY_KEY.fullmatch(key):
            raise forms.ValidationError("Use lower case letters, digits and underscores, starting with a letter.")
        return key


class ImportUploadForm(forms.Form):
    file = forms.FileField(help_text="A CSV file with a header row.")

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            raise forms.ValidationError(f"The file is larger than {settings.IMPORT_MAX_BYTES // (1024 * 1024)} MB.")
        if not upload.name.lower().endswith((".csv", ".txt")):
            raise forms.ValidationError("Upload a .csv file.")
        return upload


class ImportMappingForm(forms.Form):
    """One target (and, for attributes, a key and type) per column of the file."""

    null_values = forms.CharField(
        required=False,
        label="Treat these values as empty",
        help_text='Comma-separated, e.g. "Select, N/A".',
    )

    def __init__(self, *args, headers: list[str], mapping: dict, **kwargs):
        super().__init__(*args, **kwargs)
        self.headers = headers
        columns = mapping.get("columns", {})
        self.fields["null_values"].initial = ", ".join(mapping.get("null_values", []))
        for index, header in enumerate(headers):
            spec = columns.get(header, {"to": "ignore"})
            self.fields[f"to_{index}"] = forms.ChoiceField(
                choices=target_choices(), initial=spec.get("to"), label=header
            )
            self.fields[f"key_{index}"] = forms.CharField(
                required=False, initial=spec.get("key", ""), label="Attribute key"
            )
            self.fields[f"type_{index}"] = forms.ChoiceField(
                choices=CustomAttribute.DataType.choices, initial=spec.get("type", "text"), label="Type"
            )

    def rows(self):
        for index, header in enumerate(self.headers):
            yield header, self[f"to_{index}"], self[f"key_{index}"], self[f"type_{index}"]

    def mapping(self) -> dict:
        columns = {}
        for index, header in enumerate(self.headers):
            to = self.cleaned_data[f"to_{index}"]
            if to == "ignore":
                continue
            spec = {"to": to}
            if to == "attribute":
                spec["key"] = self.cleaned_data[f"key_{index}"] or header
                spec["type"] = self.cleaned_data[f"type_{index}"]
                spec["label"] = header
            columns[header] = spec
        nulls = [value.strip() for value in self.cleaned_data["null_values"].split(",") if value.strip()]
        return {"columns": columns, "null_values": nulls}
