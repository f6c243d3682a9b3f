"""Inserting many rows of a model in one statement with one parameter.

`QuerySet.bulk_create` sends one placeholder per value: a few hundred rows of a dozen
columns are thousands of parameters, each adapted on its own, and the driver rewrites
every placeholder of the statement. A full rescore that hands off a few hundred leads per
chunk spent more time there than in the database. On PostgreSQL `bulk_insert` sends the
rows as one JSON document (one C-level json.dumps) that the server unpacks; elsewhere it
is bulk_create.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal

from django.db import connection, models
from django.db.models.fields import AutoFieldMixin


def bulk_insert(model: type[models.Model], objs: Sequence[models.Model]) -> None:
    """Insert `objs` (unsaved instances of `model`, as for bulk_create) and give them their ids.

    The rows go in, and their ids come back, in the document's order: the assumption
    bulk_create makes on PostgreSQL too (INSERT … SELECT FROM unnest(…) RETURNING)."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(objs, batch_size=1000)
        return
    fields = [field for field in model._meta.concrete_fields if not isinstance(field, AutoFieldMixin)]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    values = ", ".join(_value_sql(field, n) for n, field in enumerate(fields))
    document = json.dumps([[getattr(obj, field.attname) for field in fields] for obj in objs], default=_json_value)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {model._meta.db_table} ({columns}) "
            f"SELECT {values} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(r, n) ORDER BY n "
            f"RETURNING {connection.ops.quote_name(model._meta.pk.column)}",
            [document],
        )
        for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
            obj.pk = pk
            obj._state.adding, obj._state.db = False, connection.alias


def _value_sql(field: models.Field, position: int) -> str:
    """The SQL that takes a field's value out of a row of the document (r)."""
    db_type = field.db_type(connection)
    if db_type == "jsonb":
        return f"r->{position}"
    if db_type.startswith("varchar"):
        # Text, not varchar(n): an explicit cast to varchar(n) would cut a long value short
        # where storing it must fail, as it does with bulk_create.
        return f"(r->>{position})::text"
    return f"(r->>{position})::{db_type}"


def _json_value(value):
    """Values json cannot write itself, as text PostgreSQL reads back exactly (a Decimal's
    digits, a datetime's microseconds and offset)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def models_where(model: type[models.Model], where: str, params: list, *, fallback: models.QuerySet):
    """Instances of `model` whose rows match `where` (SQL on the model's table), read in plain
    SQL on PostgreSQL; elsewhere `fallback`, the same rows through the ORM. For a few rows on
    a hot path (every ingest), where building the ORM's query takes longer than running it."""
    if connection.vendor != "postgresql":
        return list(fallback)
    names = [field.attname for field in model._meta.concrete_fields]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(names)} FROM {model._meta.db_table} WHERE {where}", params)
        return [model.from_db(connection.alias, names, row) for row in cursor.fetchall()]
