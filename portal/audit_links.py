"""Links from an audit event to the screen of its object.

The audit log belongs to the portal core, which imports no app; the layer that
owns the screens registers, per object type, a function that turns the object
ids on one page of the log into the URLs the reader may open (one query per
object type, so a page costs a fixed number of queries). An object the reader
may not open, or that no screen shows, gets no link.
"""

from collections.abc import Callable, Iterable

Resolver = Callable[[object, list[str]], dict[str, str]]

_resolvers: dict[str, Resolver] = {}


def register(object_type: str, resolver: Resolver) -> None:
    """`resolver(user, object_ids)` answers {object_id: url} for the ids the user may open."""
    _resolvers[object_type] = resolver


def object_urls(user, objects: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """{(object_type, object_id): url} for the objects the user may open."""
    ids: dict[str, set[str]] = {}
    for object_type, object_id in objects:
        if object_type in _resolvers and object_id:
            ids.setdefault(object_type, set()).add(object_id)
    urls: dict[tuple[str, str], str] = {}
    for object_type, wanted in ids.items():
        for object_id, url in _resolvers[object_type](user, sorted(wanted)).items():
            urls[(object_type, object_id)] = url
    return urls
