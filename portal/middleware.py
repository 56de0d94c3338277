import time
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.core.exceptions import PermissionDenied
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.locale import LocaleMiddleware
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _

# Paths no sign-in control applies to: assets, the partner API and machine endpoints.
UNCONTROLLED_PREFIXES = (
    "/static/",
    "/i18n/",
    "/api/",
    "/sandbox/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/favicon.ico",
)


def wants_page(request) -> bool:
    """A GET for an HTML page: the only request a redirect to another page serves. An image
    (the browser's favicon fetch), a script's JSON poll or a form post is refused instead, so that
    it cannot land on a page with side effects (the TOTP set-up page makes a secret)."""
    if request.method not in ("GET", "HEAD"):
        return False
    destination = request.META.get("HTTP_SEC_FETCH_DEST")
    if destination and destination not in ("document", "iframe"):
        return False
    accept = request.META.get("HTTP_ACCEPT", "")
    return not accept or "text/html" in accept or accept.strip() == "*/*"


def _redirect_or_refuse(request, url: str):
    if wants_page(request):
        return redirect(url)
    raise PermissionDenied


def _paths(*names: str) -> frozenset[str]:
    return frozenset(reverse(name) for name in names)


class SessionTimeoutMiddleware:
    """Signs out a session left unused for ECARD_IDLE_TIMEOUT_MINUTES, and one older than
    SESSION_COOKIE_AGE: Django renews a session's expiry whenever it is saved, which recording
    the activity does, so the absolute limit is kept here. The sign-in page then says why."""

    LAST_ACTIVITY = "ecard_last_activity"
    SIGNED_IN_AT = "ecard_signed_in_at"
    # Activity is written at most this often (each write is a session save).
    RESOLUTION_SECONDS = 60

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(UNCONTROLLED_PREFIXES):
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            self._check(request)
        return self.get_response(request)

    def _check(self, request) -> None:
        session = request.session
        now = time.time()
        last = session.get(self.LAST_ACTIVITY)
        started = session.get(self.SIGNED_IN_AT)
        idle_limit = settings.ECARD_IDLE_TIMEOUT_MINUTES * 60
        if isinstance(last, int | float) and now - last > idle_limit:
            logout(request)
            messages.info(
                request,
                _("You were signed out after %(minutes)d minutes without activity.")
                % {"minutes": settings.ECARD_IDLE_TIMEOUT_MINUTES},
            )
            return
        if isinstance(started, int | float) and now - started > settings.SESSION_COOKIE_AGE:
            logout(request)
            messages.info(
                request,
                _("You were signed out: a session lasts at most %(hours)s hours.")
                % {"hours": f"{settings.SESSION_COOKIE_AGE / 3600:g}"},
            )
            return
        if started is None:
            session[self.SIGNED_IN_AT] = now
        if not isinstance(last, int | float):
            session[self.LAST_ACTIVITY] = now
        # A script's JSON poll (the import progress bar) is not the person's activity.
        elif (wants_page(request) or request.method not in ("GET", "HEAD")) and now - last >= self.RESOLUTION_SECONDS:
            session[self.LAST_ACTIVITY] = now


class RequirePasswordChangeMiddleware:
    """A person whose password was set by an administrator (a new account, a reset) chooses their
    own before anything else, TOTP enrolment included: every other screen sends them to the
    password change page. The answer is kept in the session (an administrator's reset changes the
    password hash, which ends the person's sessions anyway)."""

    SESSION_KEY = "ecard_must_change_password"

    def __init__(self, get_response):
        self.get_response = get_response
        self._allowed: frozenset[str] | None = None

    def __call__(self, request):
        if request.path.startswith(UNCONTROLLED_PREFIXES) or request.path.startswith("/accounts/password/reset/"):
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return self.get_response(request)
        if self._allowed is None:
            self._allowed = _paths("account_change_password", "account_logout", "account_login", "account_inactive")
        if request.path in self._allowed or not self._required(request, user):
            return self.get_response(request)
        if wants_page(request):
            messages.info(request, _("Please choose your own password before you continue."))
        return _redirect_or_refuse(request, reverse("account_change_password"))

    def _required(self, request, user) -> bool:
        from portal.signin import must_change_password

        state = request.session.get(self.SESSION_KEY)
        if not isinstance(state, dict) or state.get("user") != user.pk:
            state = {"user": user.pk, "required": must_change_password(user)}
            request.session[self.SESSION_KEY] = state
        return bool(state["required"])


class RequireMFAMiddleware:
    """National operators, region administrators and auditors set up TOTP
    before they can open any screen; until then every page sends them to
    the TOTP activation page. Of the account pages only those an unenrolled
    person needs stay open: sign-in and out, the password change and reset, and
    the activation itself (with the password check allauth asks first)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self._allowed: frozenset[str] | None = None

    def __call__(self, request):
        if request.path.startswith(UNCONTROLLED_PREFIXES):  # first: the partner API never loads a user
            return self.get_response(request)
        if self._allowed is None:
            self._allowed = _paths(
                "account_login",
                "account_logout",
                "account_inactive",
                "account_reauthenticate",
                "account_change_password",
                "mfa_activate_totp",
                "mfa_authenticate",
            )
        if request.path in self._allowed or request.path.startswith("/accounts/password/reset/"):
            return self.get_response(request)
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and getattr(user, "requires_mfa", False)
            and not user_has_totp(user)
        ):
            if wants_page(request):
                # allauth's set-up ends on the recovery codes and forgets `next`: their page
                # offers this one to go on with (templates/mfa/recovery_codes/index.html).
                request.session[NEXT_AFTER_MFA_SETUP] = request.get_full_path()
            return _redirect_or_refuse(
                request, reverse("mfa_activate_totp") + "?next=" + quote(request.get_full_path())
            )
        return self.get_response(request)


NEXT_AFTER_MFA_SETUP = "ecard_next_after_mfa_setup"


def user_has_totp(user) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


class ChineseFirstMiddleware:
    """Screens are in Simplified Chinese unless the person chose English (the language
    cookie set by the switcher): a browser's own Accept-Language does not decide it.
    Goes before LocaleMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.META.pop("HTTP_ACCEPT_LANGUAGE", None)
        return self.get_response(request)


class PartnerApiMiddleware:
    """The partner API (`/api/v1/...`) takes a short way through the middleware.

    Placed right after SecurityMiddleware. A partner request is signed, never
    carries a session, a CSRF token or a signed-in user, and is answered by a
    DRF view whatever its path (the API's catch-all answers unknown paths with a
    signed 404). The screens' middleware (static files, sessions, CSRF, users,
    messages, allauth, MFA) does nothing for it but still costs CPU on every
    request, on the path of every settlement. What does apply still runs, in the
    same order: the language (Chinese first, as for screens: problem details are
    translated), X-Frame-Options, and CommonMiddleware's Content-Length.
    """

    PREFIX = "/api/v1/"

    def __init__(self, get_response):
        self.get_response = get_response
        views = BaseHandler()  # URL resolution and the view, with no middleware of its own
        views._view_middleware, views._template_response_middleware, views._exception_middleware = [], [], []
        chain = convert_exception_to_response(views._get_response)
        for middleware in (XFrameOptionsMiddleware, LocaleMiddleware, ChineseFirstMiddleware):  # innermost first
            chain = convert_exception_to_response(middleware(chain))
        self._api = chain

    def __call__(self, request):
        if not request.path_info.startswith(self.PREFIX):
            return self.get_response(request)
        # The API reads UTF-8 only, whatever a charset parameter says (RFC 8259 defines none for
        # JSON): Django would decode the query with that codec, and one such as `zlib` fails there.
        # Set before anything reads the query; the public setter would read it first.
        request._encoding = None
        response = self._api(request)
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))  # as CommonMiddleware
        return response
