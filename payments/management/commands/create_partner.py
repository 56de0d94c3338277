"""`python manage.py create_partner CODE --name NAME --kind wallet|service_platform --webhook-url URL
--public-key-file PEM` (PARTNER_API.md "Provisioning").

Registers the partner, or adds the key to an existing one, and prints
`{"partner": "CODE", "key_id": "..."}` as its last line.
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, no_translations
from django.db import transaction

from payments.models import Partner, PartnerKind
from payments.partners import services as partners
from portal.actors import Actor
from portal.errors import DomainError


class Command(BaseCommand):
    help = "Register a partner with an Ed25519 public key, or add a key to an existing partner."

    def add_arguments(self, parser) -> None:
        parser.add_argument("code", help="the partner's code, e.g. wechat")
        parser.add_argument("--name", help="display name (required for a new partner)")
        parser.add_argument(
            "--kind", choices=PartnerKind.values, help="wallet or service_platform (required for a new partner)"
        )
        parser.add_argument(
            "--webhook-url", default="", help="where events are POSTed (empty: the partner only polls /events)"
        )
        parser.add_argument(
            "--public-key-file", required=True, help="the partner's Ed25519 public key: PEM, or base64 of 32 raw bytes"
        )

    @no_translations  # operators' terminals and logs read English
    def handle(
        self, *args, code: str, name: str | None, kind: str | None, webhook_url: str, public_key_file: str, **options
    ) -> None:
        try:
            public_key = Path(public_key_file).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {public_key_file}: {exc.strerror}") from exc
        actor = Actor.system("create_partner")
        try:
            with transaction.atomic():
                partner = Partner.objects.select_for_update(no_key=True).filter(code=code).first()
                if partner is None:
                    if not name or not kind:
                        raise CommandError("--name and --kind are required to register a new partner")
                    partner = partners.partner_create(
                        actor=actor, code=code, name=name, kind=kind, webhook_url=webhook_url
                    )
                    self.stderr.write(f"registered partner {partner.code}")
                else:
                    if kind and kind != partner.kind:
                        raise CommandError(f"partner {code} exists with kind {partner.kind}; the kind cannot change")
                    if name and name != partner.name or webhook_url and webhook_url != partner.webhook_url:
                        self.stderr.write(
                            "partner exists: only the key is added (change its name or webhook URL in the portal)"
                        )
                key = partners.partner_key_add(actor=actor, partner=partner, public_key=public_key)
        except DomainError as exc:
            field = exc.extra.get("field")
            raise CommandError(f"{field}: {exc.message}" if field else exc.message) from exc
        self.stdout.write(json.dumps({"partner": partner.code, "key_id": key.key_id}))
