"""Queries compiled once and run many times: for the hot path's few queries whose building
by the ORM costs more than the database's work (measured by `make bench`).

The query is built once with stand-in values where the request's own go (a negative id
no row has, a UUID or a moment no request uses), compiled to SQL and its parameters, and
kept; each run puts the request's values where the stand-ins are (`with_values`) and runs
the SQL raw. A stand-in is compared with the parameters as the database gets them, so a
value the ORM adapts (a UUID, a time on SQLite) is given adapted too (`prepared`).
"""

from __future__ import annotations

import datetime
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import DateTimeField, Field, Model, QuerySet

M = TypeVar("M", bound=Model)


def compiled(queryset: QuerySet[Any, Any]) -> tuple[str, tuple[Any, ...]]:
    """The SQL and the parameters of this queryset, as it would run."""

    sql, params = queryset.query.get_compiler(using=DEFAULT_DB_ALIAS).as_sql()
    return sql, tuple(params)


def prepared(model: type[Model], field_name: str, value: Any) -> Any:
    """`value` as the database gets it for this model's field."""

    field = model._meta.get_field(field_name)
    assert isinstance(field, Field)
    return field.get_db_prep_value(value, connection, prepared=False)


def with_values(params: Sequence[Any], put: Mapping[Any, Any], *, expected: int) -> list[Any]:
    """The parameters with the request's values in the stand-ins' places. `expected`: how
    many places there are; a query that has another number (the ORM's SQL changed under
    an upgrade) fails loudly rather than running with a stand-in."""

    values = []
    replaced = 0
    for value in params:
        if isinstance(value, Hashable) and value in put:
            values.append(put[value])
            replaced += 1
        else:
            values.append(value)
    if replaced != expected:
        raise RuntimeError(f"compiled query: {replaced} stand-ins found, {expected} expected")
    return values


def instance_from(model: type[M], values: Mapping[str, Any]) -> M:
    """A model instance, as loaded, from its row's values given as JSON (built by the
    database, or kept in the session): each value back to its field's type. A time SQLite
    wrote without an offset is UTC (PostgreSQL says +00:00)."""

    fields = {f.attname: f for f in model._meta.concrete_fields}
    typed = {}
    for name, value in values.items():
        typed[name] = fields[name].to_python(value)
        moment = typed[name]
        if (
            isinstance(fields[name], DateTimeField)
            and isinstance(moment, datetime.datetime)
            and not moment.tzinfo
        ):
            typed[name] = moment.replace(tzinfo=datetime.UTC)
    instance = model(**typed)
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return instance
