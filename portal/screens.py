"""Small helpers shared by the server-rendered screens: role checks and the
reason-then-confirm pattern of every consequential action."""

from collections.abc import Callable, Sequence
from functools import wraps

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from portal.errors import DomainError

CONFIRM_FIELD = "confirmed"


def require_citizen_writer(user) -> None:
    """Auditors are read-only everywhere: write screens answer 403."""
    if not getattr(user, "can_write_citizens", False):
        raise PermissionDenied


def require_staff_manager(user) -> None:
    if not getattr(user, "can_manage_staff", False):
        raise PermissionDenied


def region_data_required(view: Callable) -> Callable:
    """The screens of the regions' data (citizens, e-cards, imports, bindings, settlements,
    dashboards, catalogue): every role but the security officer, whose duty is keys
    (separation of duties, portal/models.py). The scope then narrows to the user's regions."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not getattr(request.user, "sees_region_data", False):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper


def citizen_writer_required(view: Callable) -> Callable:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        require_citizen_writer(request.user)
        return view(request, *args, **kwargs)

    return wrapper


def staff_manager_required(view: Callable) -> Callable:
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        require_staff_manager(request.user)
        return view(request, *args, **kwargs)

    return wrapper


def role_required(roles: set[str]) -> Callable[[Callable], Callable]:
    """A signed-in user whose role is one of `roles`; anyone else is refused (403)."""

    def decorator(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if getattr(request.user, "role", None) not in roles:
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def paginate(request: HttpRequest, queryset, per_page: int = 25) -> Page:
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def state_param(request: HttpRequest, states: Sequence[str], default: str) -> str:
    """The list's `?state=` filter: one of `states`, else `default` (a hand-edited URL shows the default list)."""
    state = request.GET.get("state", default)
    return state if state in states else default


def querystring_without_page(request: HttpRequest) -> str:
    """The list's filters, for its page links and export form (an old export link's `format` is dropped)."""
    params = request.GET.copy()
    for key in ("page", "format", "export"):
        params.pop(key, None)
    return params.urlencode()


def add_domain_error(form: forms.Form, error: DomainError) -> None:
    """A refused operation becomes an error on its field (or on the form)."""
    field = error.extra.get("field")
    form.add_error(field if field in form.fields else None, error.message)


def two_step(
    request: HttpRequest,
    *,
    form: forms.Form,
    template: str,
    context: dict,
    perform: Callable[[dict], HttpResponse],
) -> HttpResponse:
    """Step 1 shows the form; a valid POST shows the confirmation page restating
    what will happen; only a POST carrying the confirmation calls `perform`.

    `perform` receives the cleaned data; a DomainError it raises is shown as a
    form error and nothing is written (the service's transaction rolled back).
    """
    step = "form"
    if request.method == "POST" and form.is_valid():
        if request.POST.get(CONFIRM_FIELD) == "yes":
            try:
                return perform(form.cleaned_data)
            except DomainError as error:
                add_domain_error(form, error)
                messages.error(request, error.message)
        else:
            step = "confirm"
    return render(request, template, {**context, "form": form, "step": step, "confirm_field": CONFIRM_FIELD})
