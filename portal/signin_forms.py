"""allauth forms the portal adjusts (ACCOUNT_FORMS and MFA_FORMS in settings)."""

from allauth.account import forms as account_forms
from allauth.mfa.totp import forms as totp_forms
from allauth.mfa.totp.internal import auth
from django import forms
from django.utils.translation import gettext_lazy as _


class LoginForm(account_forms.LoginForm):
    """allauth labels the sign-in box "Login" (登录 in Chinese, the verb "sign in"): it takes a
    username or an e-mail address, and says so in both languages."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["login"].label = _("Username or email")


class ActivateTOTPForm(totp_forms.ActivateTOTPForm):
    """allauth makes a new secret each time the set-up page is opened, so a second opening (a
    reload, another tab, a stray request redirected there) silently invalidates the QR code the
    person has just scanned. Here the secret stays in the session until TOTP is activated (allauth
    then clears it) or the person signs out."""

    def __init__(self, *args, **kwargs) -> None:
        # The parent's __init__ without its `regenerate=not self.is_bound`.
        self.user = kwargs.pop("user")
        forms.Form.__init__(self, *args, **kwargs)
        self.secret = auth.get_totp_secret(regenerate=False)
