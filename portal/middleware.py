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
