from rest_framework import serializers

from .models import ContactScore, ScoreChange


class ContributionOutput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["fit", "engagement", "cap"])
    rule = serializers.CharField()
    rule_id = serializers.IntegerField(allow_null=True)
    facts = serializers.CharField()
    points = serializers.DecimalField(max_digits=8, decimal_places=1)


class ContactScoreOutput(serializers.ModelSerializer):
    version = serializers.StringRelatedField()
    explanation = ContributionOutput(many=True)

    class Meta:
        model = ContactScore
        fields = [
            "contact",
            "version",
            "total",
            "fit",
            "engagement",
            "fit_grade",
            "mql_level",
            "as_of",
            "computed_at",
            "explanation",
        ]


class ScoreChangeOutput(serializers.ModelSerializer):
    old_total = serializers.DecimalField(
        max_digits=8, decimal_places=1, allow_null=True, help_text="null for the contact's first score: it had none."
    )

    class Meta:
        model = ScoreChange
        fields = ["changed_at", "old_total", "new_total", "delta", "fit_grade", "reason"]
