"""`python manage.py rotate_portal_key [--activate]` (PARTNER_API.md "Provisioning")."""

import json

from django.core.management.base import BaseCommand, CommandError

from payments import keys
from portal.actors import Actor
from portal.errors import DomainError


class Command(BaseCommand):
    help = "Create the portal's first signing key (active), or a next key; --activate makes the next key active."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--activate", action="store_true", help="make the next key active and retire the old one")

    def handle(self, *args, activate: bool = False, **options) -> None:
        actor = Actor.system("rotate_portal_key")
        try:
            key = keys.portal_key_activate_next(actor=actor) if activate else keys.portal_key_create(actor=actor)
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(json.dumps({"key_id": key.key_id, "state": key.state}))
