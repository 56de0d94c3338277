import logging
import smtplib

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.utils import filter_users_by_email, filter_users_by_username
from allauth.core import context as allauth_context
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest
from django.urls import reverse

from portal import services, signin
from portal.actors import Actor, client_ip
from portal.middleware import RequirePasswordChangeMiddleware
from portal.models import User

logger = logging.getLogger(__name__)


def _account_named(credentials: dict) -> User | None:
    """The one account a sign-in names by username or e-mail address, if there is one."""
    if username := credentials.get("username"):
        users = list(filter_users_by_username(username)[:2])
        if len(users) == 1:
            return users[0]
    if email := credentials.get("email"):
        users = filter_users_by_email(email)
        if len(users) == 1:
            return users[0]
    return None


class PortalAccountAdapter(DefaultAccountAdapter):
    """Staff accounts are created by administrators, never by sign-up; sign-in locks by account
    (portal/signin.py); the client address is the trusted proxy's (portal.actors.client_ip)."""

    def is_open_for_signup(self, request) -> bool:
        return False

    def get_client_ip(self, request: HttpRequest) -> str:
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied("Unable to determine client IP address")
        return ip

    # --- Lock-out by account ---------------------------------------------------------------

    def pre_authenticate(self, request: HttpRequest, **credentials) -> None:
        # A locked account is refused before its password is checked.
        self._named = _account_named(credentials)
        login = credentials.get("username") or credentials.get("email") or ""
        if self._named is not None:
            minutes = signin.lock_minutes_left(self._named)
        else:
            minutes = signin.unknown_lock_minutes_left(login)
        if minutes:
            raise ValidationError(signin.locked_message(minutes), code="account_locked")
        super().pre_authenticate(request, **credentials)  # allauth's per-address limit

    def authenticate(self, request: HttpRequest, **credentials):
        user = super().authenticate(request, **credentials)
        if user is not None:
            signin.sign_in_succeeded(user=user)
        return user

    def authentication_failed(self, request: HttpRequest, **credentials) -> None:
        named = getattr(self, "_named", None)
        if named is not None:
            minutes = signin.sign_in_failed(user=named, ip=client_ip(request))
        else:
            minutes = signin.unknown_sign_in_failed(credentials.get("username") or credentials.get("email") or "")
        if minutes:
            raise ValidationError(signin.locked_message(minutes), code="account_locked")

    # --- Passwords the person chooses --------------------------------------------------------

    def set_password(self, user, password: str) -> None:
        """allauth's change, set and reset-by-e-mail flows: the person chose this password, so an
        initial or administrator-reset password no longer has to be changed."""
        request = allauth_context.request
        actor = Actor.for_user(user, client_ip(request) if request is not None else None)
        services.staff_password_chosen(actor=actor, user=user, password=password)
        if request is not None and hasattr(request, "session"):
            request.session.pop(RequirePasswordChangeMiddleware.SESSION_KEY, None)

    def get_password_change_redirect_url(self, request: HttpRequest) -> str:
        # The home screen, which sends a person who still has to enrol TOTP on to do so.
        return reverse("home")

    # --- Mail ----------------------------------------------------------------------------------

    def send_mail(self, template_prefix: str, email: str, context: dict) -> None:
        """A relay that is down must not answer 500, nor tell a known address from an unknown one."""
        try:
            super().send_mail(template_prefix, email, context)
        except (OSError, smtplib.SMTPException):
            logger.exception("could not send the %s e-mail", template_prefix)
