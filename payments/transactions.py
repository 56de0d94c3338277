"""Service transactions without a savepoint where the caller rolls back everything anyway.

A service is `@transaction.atomic`: outermost it is the transaction, nested it
is a SAVEPOINT and a RELEASE (two statements). The partner API's idempotent
requests (`PartnerApiView._run_claimed`, payments/api_base.py) run their
handler inside one transaction that is rolled back whole when the handler
raises, so a savepoint there buys nothing. `service_atomic` services then
join that transaction without one; called anywhere else (a screen, a task, a
test that catches the error and goes on inside its own transaction) they
behave exactly as `@transaction.atomic`. A handler run inside the block must
let a service's error propagate (as the settlement views do): caught there,
the transaction would be left unusable.
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from django.db import transaction

P = ParamSpec("P")
R = TypeVar("R")

_rolled_back_whole: ContextVar[bool] = ContextVar("ecard_rolled_back_whole", default=False)


@contextmanager
def rolled_back_whole_on_error() -> Iterator[None]:
    """Inside a transaction that the caller rolls back entirely on any exception from this block."""
    token = _rolled_back_whole.set(True)
    try:
        yield
    finally:
        _rolled_back_whole.reset(token)


def service_atomic(func: Callable[P, R]) -> Callable[P, R]:
    """`@transaction.atomic`, minus the savepoint inside `rolled_back_whole_on_error`."""

    @functools.wraps(func)
    def inner(*args: P.args, **kwargs: P.kwargs) -> R:
        savepoint = not _rolled_back_whole.get()
        token = _rolled_back_whole.set(False)  # what this service calls keeps its own savepoints
        try:
            with transaction.atomic(savepoint=savepoint):
                return func(*args, **kwargs)
        finally:
            _rolled_back_whole.reset(token)

    return inner
