from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.locale import LocaleMiddleware
from django.shortcuts import redirect
from django.urls import reverse


class RequireMFAMiddleware:
    """National operators, region administrators and auditors set up TOTP
    before they can open any screen; until then every screen sends them to
    the TOTP activation page."""

    EXEMPT_PREFIXES = ("/accounts/", "/static/", "/i18n/", "/api/", "/sandbox/", "/healthz")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(self.EXEMPT_PREFIXES):  # first: the partner API never loads a user
            return self.get_response(request)
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and getattr(user, "requires_mfa", False)
            and not user_has_totp(user)
        ):
            return redirect(reverse("mfa_activate_totp") + "?next=" + request.get_full_path())
        return self.get_response(request)


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
