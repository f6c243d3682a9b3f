"""What the OpenAPI schema cannot learn from the serializers alone: rules that span fields.

Loaded from LeadsConfig.ready(), as drf-spectacular extensions must be imported to count.
"""

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.openapi import AutoSchema


def _one_of_present(*fields: str) -> list[dict]:
    """JSON schema for "at least one of these fields, not blank"."""
    return [{"required": [name], "properties": {name: {"type": "string", "minLength": 1}}} for name in fields]


class IngestEventInputSchema(OpenApiSerializerExtension):
    target_class = "leads.serializers.IngestEventInput"

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["anyOf"] = [*_one_of_present("email", "contact_external_id"), {"required": ["contact_id"]}]
        return schema


class ContactInputSchema(OpenApiSerializerExtension):
    target_class = "leads.serializers.ContactInput"

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if not self.target.partial:  # creating: the contact needs an identity; a PATCH keeps its own
            schema["anyOf"] = _one_of_present("email", "external_id")
        return schema


class RequiredBodySchema(AutoSchema):
    """For POSTs whose body drf-spectacular marks optional because no single field is
    required (only one of several, or a raw schema): without a body they are refused."""

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body and self.method == "POST":
            body["required"] = True
        return body
