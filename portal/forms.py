from django import forms
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from portal.models import Role, User
from portal.scope import regions_visible_to
from portal.selectors import roles_manageable_by
from portal.text import PlainTextForm


class StaffCreateForm(PlainTextForm):
    username = forms.CharField(label=_("Username"), max_length=150, validators=[UnicodeUsernameValidator()])
    email = forms.EmailField(label=_("E-mail"), required=False)
    role = forms.ChoiceField(label=_("Role"))
    regions = forms.ModelMultipleChoiceField(
        label=_("Regions"), queryset=None, required=False, widget=forms.CheckboxSelectMultiple
    )
    password = forms.CharField(
        label=_("Initial password"),
        widget=forms.PasswordInput(render_value=False),
        help_text=_("At least 10 characters; the person changes it after signing in."),
    )

    def __init__(self, *args, manager, **kwargs):
        super().__init__(*args, **kwargs)
        allowed = roles_manageable_by(manager)
        self.fields["role"].choices = [c for c in Role.choices if c[0] in allowed]
        self.fields["regions"].queryset = regions_visible_to(manager)
        own = list(self.fields["regions"].queryset[:2])
        if manager.role == Role.REGION_ADMIN and len(own) == 1:
            self.fields["regions"].initial = own  # the only choice an administrator of one region has
        if Role.AUDITOR in allowed:
            self.fields["regions"].help_text = _(
                "An auditor of every region is a national auditor: it also reads the events recorded "
                "without a region (partners, keys, national staff accounts)."
            )
        # Offered only where the deployment allows one account two duties (DESIGN §2).
        if settings.ECARD_ALLOW_OPERATOR_AUDITOR and Role.NATIONAL_OPERATOR in allowed:
            self.fields["also_auditor"] = forms.BooleanField(
                label=_("Also an auditor"),
                required=False,
                help_text=_("A national operator who also reads the audit log; this deployment allows it."),
            )

    def clean_username(self) -> str:
        # The service checks these too; here they are reported with every other error at once.
        username = self.cleaned_data["username"].strip()
        if User.objects.filter(username__iexact=username).exists():
            raise forms.ValidationError(_("This username is already taken."))
        return username

    def clean(self):
        data = super().clean()
        if data.get("password"):
            try:
                validate_password(
                    data["password"], User(username=data.get("username", ""), email=data.get("email", ""))
                )
            except ValidationError as exc:
                self.add_error("password", exc)
        role = data.get("role")
        national = (Role.NATIONAL_OPERATOR, Role.SECURITY_OFFICER)
        if role and role not in national and not data.get("regions"):
            self.add_error("regions", _("Choose at least one region."))
        if data.get("also_auditor") and role != Role.NATIONAL_OPERATOR:
            self.add_error("also_auditor", _("Only a national operator may also be an auditor."))
        return data


class StaffReasonForm(PlainTextForm):
    """The reason an administrator gives for an action on a staff account (deactivate, unlock,
    reset the password), recorded in the audit log."""

    reason = forms.CharField(
        label=_("Reason"),
        max_length=128,
        error_messages={"required": _("A reason is required.")},
        widget=forms.TextInput(attrs={"size": 60}),
    )
