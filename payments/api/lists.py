"""What the partner list endpoints share: the page envelope and the `state` filter."""

from collections.abc import Sequence

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.request import Request

from payments.api.problems import ApiError, ProblemCode


def page_of(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """The OpenAPI shape of a page, `{"results": [item, ...], "next_cursor": string or null}`,
    as a serializer class called `name` (drf-spectacular names the component after it)."""
    fields = {
        "results": item(many=True),
        "next_cursor": serializers.CharField(allow_null=True),
        "__module__": item.__module__,
        "__doc__": f"A page of {item.__name__.removesuffix('OutputSerializer')} objects.",
    }
    return type(name, (serializers.Serializer,), fields)


def filter_by_state(request: Request, rows: QuerySet, states: Sequence[str]) -> QuerySet:
    """`rows` in the `?state=` asked for, if any; a state that is not one of `states` is a 400."""
    state = request.query_params.get("state")
    if state is None:
        return rows
    if state not in states:
        raise ApiError(
            400,
            ProblemCode.VALIDATION_ERROR,
            "Unknown state.",
            errors={"state": ["One of: " + ", ".join(states) + "."]},
        )
    return rows.filter(state=state)
