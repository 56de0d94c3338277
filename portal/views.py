from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from portal import exports, services
from portal.actors import Actor
from portal.errors import DomainError
from portal.forms import StaffCreateForm, StaffReasonForm
from portal.models import Role, User
from portal.replica import replica_reads
from portal.screens import add_domain_error, paginate, staff_manager_required, two_step
from portal.selectors import staff_visible_to


@login_required
def home(request: HttpRequest) -> HttpResponse:
    # Administrators, auditors and national operators start on the dashboard; clerks on citizen
    # search; security officers, who see no region's data, on the portal's signing keys.
    role = getattr(request.user, "role", "")
    if role == Role.SECURITY_OFFICER:
        return redirect("portal_key_list")
    if role in {Role.NATIONAL_OPERATOR, Role.REGION_ADMIN, Role.AUDITOR}:
        return redirect("dashboard")
    return redirect("citizen_search")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


def favicon(request: HttpRequest) -> FileResponse:
    """/favicon.ico, which browsers ask for on their own; base.html links the SVG."""
    path = finders.find("favicon.ico")
    if not path:
        raise Http404
    response = FileResponse(open(path, "rb"), content_type="image/x-icon")  # noqa: SIM115 (FileResponse closes it)
    response["Cache-Control"] = "public, max-age=86400"
    return response


def account_email(request: HttpRequest) -> HttpResponse:
    """allauth's e-mail management is not offered: staff addresses are set by administrators, and
    an address added there unverified would block TOTP enrolment (allauth refuses it then)."""
    raise Http404


def _get_staff_for_user(user, pk: int) -> User:
    try:
        return staff_visible_to(user).get(pk=pk)
    except User.DoesNotExist as exc:
        raise Http404 from exc


STAFF_COLUMNS = [
    exports.Column(gettext_lazy("Username"), lambda u: u.username),
    exports.Column(gettext_lazy("Role"), lambda u: u.get_role_display()),
    exports.Column(gettext_lazy("Regions"), lambda u: " ".join(r.display_name for r in u.regions.all())),
    exports.Column(gettext_lazy("State"), lambda u: _("Active") if u.is_active else _("Deactivated")),
]


@staff_manager_required
@replica_reads
def staff_list(request: HttpRequest) -> HttpResponse:
    staff = staff_visible_to(request.user).select_related("sign_in_state")
    if fmt := exports.requested_format(request):
        return exports.export_response(request, list_name="staff", queryset=staff, columns=STAFF_COLUMNS, fmt=fmt)
    page = paginate(request, staff)
    now = timezone.now()
    for member in page:
        state = getattr(member, "sign_in_state", None)
        member.is_locked = bool(state and state.locked_until and state.locked_until > now)
    return render(request, "portal/staff_list.html", {"page": page})


@staff_manager_required
def staff_create(request: HttpRequest) -> HttpResponse:
    form = StaffCreateForm(request.POST or None, manager=request.user)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = services.staff_create(
                actor=Actor.for_request(request),
                manager=request.user,
                username=data["username"],
                email=data["email"],
                role=data["role"],
                regions=data["regions"],
                password=data["password"],
                also_auditor=data.get("also_auditor", False),
            )
        except DomainError as error:
            add_domain_error(form, error)
        else:
            messages.success(request, _("The account %(username)s has been created.") % {"username": user.username})
            return redirect("staff_list")
    return render(request, "portal/staff_form.html", {"form": form})


def _staff_action(request: HttpRequest, member: User, *, title, consequence, perform) -> HttpResponse:
    """An administrator's action on a staff account: a reason, a confirmation naming the
    consequence, then `perform(reason)` (portal/staff_action.html)."""
    return two_step(
        request,
        form=StaffReasonForm(request.POST or None),
        template="portal/staff_action.html",
        perform=lambda data: perform(data["reason"]),
        context={"member": member, "title": title, "consequence": consequence % {"username": member.username}},
    )


def _staff_change(
    request: HttpRequest,
    member: User,
    *,
    service: Callable[..., object],
    title: str,
    consequence: str,
    done: str,
) -> HttpResponse:
    """A staff action whose effect is one service call, after which the list says `done`."""

    def perform(reason: str) -> HttpResponse:
        service(actor=Actor.for_request(request), manager=request.user, user=member, reason=reason)
        messages.success(request, done % {"username": member.username})
        return redirect("staff_list")

    return _staff_action(request, member, title=title, consequence=consequence, perform=perform)


@staff_manager_required
def staff_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    member = _get_staff_for_user(request.user, pk)
    if not member.is_active:
        messages.error(request, _("This account is already deactivated."))
        return redirect("staff_list")
    return _staff_change(
        request,
        member,
        service=services.staff_deactivate,
        title=_("Deactivate account"),
        consequence=_("The account %(username)s will be deactivated: it can no longer sign in."),
        done=_("The account %(username)s has been deactivated."),
    )


@staff_manager_required
def staff_reactivate(request: HttpRequest, pk: int) -> HttpResponse:
    member = _get_staff_for_user(request.user, pk)
    if member.is_active:
        messages.error(request, _("This account is active."))
        return redirect("staff_list")
    return _staff_change(
        request,
        member,
        service=services.staff_reactivate,
        title=_("Reactivate account"),
        consequence=_("The account %(username)s will be reactivated: it can sign in again with its password."),
        done=_("The account %(username)s has been reactivated."),
    )


@staff_manager_required
def staff_unlock(request: HttpRequest, pk: int) -> HttpResponse:
    member = _get_staff_for_user(request.user, pk)
    return _staff_change(
        request,
        member,
        service=services.staff_unlock,
        title=_("Unlock account"),
        consequence=_("The account %(username)s will be unlocked: it can sign in again at once."),
        done=_("The account %(username)s has been unlocked."),
    )


@staff_manager_required
def staff_password_reset(request: HttpRequest, pk: int) -> HttpResponse:
    member = _get_staff_for_user(request.user, pk)

    def perform(reason: str) -> HttpResponse:
        password = services.staff_password_reset(
            actor=Actor.for_request(request), manager=request.user, user=member, reason=reason
        )
        # Shown on this one answer and kept nowhere else: not in a message, a session or a cache.
        response = render(request, "portal/staff_password_shown.html", {"member": member, "password": password})
        response["Cache-Control"] = "no-store"
        return response

    return _staff_action(
        request,
        member,
        title=_("Reset password"),
        consequence=_(
            "The account %(username)s will get a temporary password, shown once on the next page. Its "
            "sessions end, and the person must choose a new password at the next sign-in."
        ),
        perform=perform,
    )
