"""Helpers shared by the screen tests: signing staff in (with TOTP where their role needs it)."""

from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

from payments.models import Partner, PartnerKind


def sign_in(client, user) -> None:
    """Sign the user in; roles that require MFA get a TOTP authenticator first,
    so that the MFA middleware lets them through (test_mfa covers the real flow)."""
    if user.requires_mfa and not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
        TOTP.activate(user, generate_totp_secret())
    client.force_login(user)


def make_partner(code: str = "wechat", name: str = "WeChat Pay") -> Partner:
    return Partner.objects.create(code=code, name=name, kind=PartnerKind.WALLET)
