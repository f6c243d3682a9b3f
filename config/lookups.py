"""`field__any_of=[...]`: the field equals one of many values, bound as one array.

Django's `__in` writes a placeholder per value: ten thousand ids are ten thousand literals for
PostgreSQL to parse and plan (0.12–0.19 s for 13,500 ids, where `= ANY(%s)` with one array
took 0.04 s). Elsewhere it is `__in`.
"""

from django.db.models import Field, Lookup


@Field.register_lookup
class AnyOf(Lookup):
    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = list(self.rhs)
        if connection.vendor == "postgresql":
            return f"{lhs} = ANY(%s)", [*lhs_params, values]
        if not values:
            return "1 = 0", list(lhs_params)
        return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*lhs_params, *values]
