from allauth.account.adapter import DefaultAccountAdapter


class PortalAccountAdapter(DefaultAccountAdapter):
    """Staff accounts are created by administrators, never by sign-up."""

    def is_open_for_signup(self, request) -> bool:
        return False
