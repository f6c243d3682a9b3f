"""The error answers every API operation can give, added to the OpenAPI schema, and two
input rules drf-spectacular states more loosely than DRF checks them (text, decimals).

drf-spectacular documents only the success responses a view declares, so clients (and the
schemathesis fuzzing test) would meet undocumented 400/401/403/404s. These are the answers
DRF itself gives for every endpoint here: each needs a login and a role (401, 403), each
validates its input (400), and each looks objects up by id or pages a list (404).
"""

import re

ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
# Field name → list of messages; nested objects for nested input (custom attributes, bulk events).
VALIDATION_ERRORS = {"type": "object", "additionalProperties": {}}

ANSWERS = {
    "400": ("Invalid input: each field's messages.", "ValidationErrors"),
    "401": ("No or invalid credentials.", "Error"),
    "403": ("Your role does not allow this.", "Error"),
    "404": ("No such object, page or URL.", "Error"),
}


def add_error_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook (see SPECTACULAR_SETTINGS)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR)
    schemas.setdefault("ValidationErrors", VALIDATION_ERRORS)
    for name, component in schemas.items():
        if name.endswith("Request"):
            _describe_text(component)
            _require_decimal_digits(component)
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for operation in operations.values():
            _document_errors(operation, looks_up_by_id="{" in path)
    return result


def _document_errors(operation: dict, *, looks_up_by_id: bool) -> None:
    query = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    applies = {
        "400": "requestBody" in operation or bool(query),
        "401": True,
        "403": True,
        "404": looks_up_by_id or "page" in query,
    }
    for code, (description, component) in ANSWERS.items():
        if not applies[code]:
            continue
        response = operation["responses"].setdefault(code, {"description": description})
        # A view's own description stays; the body's shape is added where the view gave none.
        response.setdefault("content", {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}})


NO_NUL = r"^[^\x00]*$"
# DRF trims input text before checking it is not blank, so "  " is refused like "".
VISIBLE_NO_NUL = r"^[^\x00]*[^\s\x00][^\x00]*$"
FREE_FORM_VALUE = {
    "nullable": True,
    "oneOf": [{"type": "string", "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"}],
}


def _describe_text(component: dict) -> None:
    """Text input holds no NUL character (DRF and leads.serializers.no_nul_characters refuse
    it: PostgreSQL can store none), and a required text field needs more than whitespace."""
    for field in component.get("properties", {}).values():
        if field.get("type") == "string" and not {"pattern", "enum", "format"} & set(field):
            field["pattern"] = VISIBLE_NO_NUL if field.get("minLength", 0) >= 1 else NO_NUL
        elif field.get("type") == "object" and field.get("additionalProperties") in ({}, {"nullable": True}):
            # Free-form values (event properties, custom attributes): plain values by key.
            field["additionalProperties"] = FREE_FORM_VALUE
            field["propertyNames"] = {"pattern": NO_NUL}


LOOSE_DECIMAL = re.compile(r"\^-\?\\d\{0,(\d+)\}\(\?:\\\.\\d\{0,(\d+)\}\)\?\$")


def _require_decimal_digits(component: dict) -> None:
    """drf-spectacular's decimal pattern lets "-" or "" through; DRF wants at least one digit."""
    for field in component.get("properties", {}).values():
        loose = LOOSE_DECIMAL.fullmatch(field.get("pattern", ""))
        if field.get("format") == "decimal" and loose:
            whole, fraction = loose.groups()
            field["pattern"] = rf"^-?(?:\d{{1,{whole}}}(?:\.\d{{0,{fraction}}})?|\.\d{{1,{fraction}}})$"
