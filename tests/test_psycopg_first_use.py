"""psycopg's first use of a type whose dumper is registered by name, from several threads at once.

psycopg registers some dumpers by the type's dotted name (the `ipaddress` types among them: an audit
row's IP address) and, on the first lookup, replaces the name with the type. In psycopg 3.2 that was
`dmap[cls] = dmap.pop(name)`: a thread switched out between the pop and the store left the other
threads finding neither, and the request they served answered 500 ("cannot adapt type 'IPv4Address'
using placeholder '%s'"). The settlement benchmark hit it once, in a fresh gunicorn worker's first
concurrent requests (psycopg issue 1230, fixed in 3.3.2; requirements.txt pins a fixed release).

A thread switch cannot be forced, so the test runs the other thread's lookup at each step of the
replacement instead: inside every read and write the lookup makes of the dumpers' map.
"""

import pytest
from psycopg import adapt, adapters
from psycopg.adapt import PyFormat
from psycopg.types.string import StrDumper


class _Named:
    """A type whose dumper is registered by its dotted name, as psycopg registers IPv4Address's."""


class _NamedDumper(StrDumper):
    """Its dumper (a text one): a class of the test's own, which psycopg does not swap for a C one."""


class _Interleaving(dict):
    """The dumpers' map, running `lookup` (another thread's first use) right after each of its own
    reads and writes of a key, so that the other thread sees the map as it is between two steps."""

    def __init__(self, items, lookup):
        super().__init__(items)
        self.lookup, self.inside, self.failures = lookup, False, []

    def _another_thread(self):
        if not self.inside:
            self.inside = True
            try:
                self.lookup()
            except Exception as exc:  # noqa: BLE001 (what the other thread's request would have raised)
                self.failures.append(exc)
            finally:
                self.inside = False

    def get(self, key, default=None):
        found = super().get(key, default)
        self._another_thread()
        return found

    def pop(self, key, *default):
        found = super().pop(key, *default)
        self._another_thread()
        return found

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self._another_thread()


@pytest.mark.parametrize("format_", [PyFormat.AUTO, PyFormat.TEXT])
def test_a_type_dumped_by_name_is_found_by_every_thread_during_its_first_lookup(format_):
    amap = adapt.AdaptersMap(adapters)
    amap.register_dumper(f"{_Named.__module__}.{_Named.__qualname__}", _NamedDumper)
    assert amap._own_dumpers[format_]  # the map is this test's own copy, not psycopg's global one
    seen_by_other = []
    dmap = amap._dumpers[format_] = _Interleaving(
        amap._dumpers[format_], lambda: seen_by_other.append(amap.get_dumper(_Named, format_))
    )

    assert amap.get_dumper(_Named, format_) is _NamedDumper
    assert not dmap.failures, dmap.failures[0]
    assert seen_by_other and all(dumper is _NamedDumper for dumper in seen_by_other)
    assert amap.get_dumper(_Named, format_) is _NamedDumper  # and afterwards, by the type itself
