"""`python manage.py seed_demo [--citizens 2000]`: the demo data (see backoffice/demo.py)."""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backoffice import demo
from portal.errors import DomainError


class Command(BaseCommand):
    help = (
        "Load the demo data: regions, citizens with e-cards in every state, the wallet partners, staff per role, "
        "a week of settlements and the risk flags they raise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--citizens", type=int, default=2000, help="how many demo citizens (default 2000)")

    def handle(self, *args, citizens: int, **options) -> None:
        if settings.PRODUCTION:
            raise CommandError(
                "seed_demo loads made-up citizens and accounts with a known password; "
                "it runs only in demo mode (ECARD_MODE=demo), never in production mode."
            )
        if not 1 <= citizens <= 100_000:
            raise CommandError("--citizens must be between 1 and 100000.")
        started = time.monotonic()
        try:
            report = demo.seed_demo(citizens=citizens, out=self.stdout.write)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except DomainError as exc:  # for example a webhook URL this portal's settings refuse
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        if not report.changed:
            self.stdout.write(self.style.SUCCESS("Demo data is already in place; nothing to do."))
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Demo data seeded in {time.monotonic() - started:.1f} s: {report.citizens_created} citizens created."
                )
            )
            self.stdout.write("E-cards by state:")
            for state, count in sorted(demo.card_state_counts().items()):
                self.stdout.write(f"  {state:<28} {count:>6}")
            self._settlements(report)
        self._partners(report)
        self._credentials(report)

    def _settlements(self, report: demo.SeedReport) -> None:
        seeded = report.settlements
        if seeded is None:
            return
        self.stdout.write(
            f"Settlements of the last week by state ({seeded.accounts_funded} personal accounts funded, "
            f"{seeded.risk_flags} risk flags raised):"
        )
        for state, count in sorted(seeded.by_state.items()):
            self.stdout.write(f"  {state:<28} {count:>6}")

    def _partners(self, report: demo.SeedReport) -> None:
        self.stdout.write("")
        self.stdout.write("Wallet partners (sign API calls with the private key in the PEM file):")
        for partner in report.partners:
            note = "" if partner.created else "  (existing)"
            if not partner.pem_path.exists():
                note += "  (no private key file on this machine)"
            self.stdout.write(f"  {partner.code:<12} key_id={partner.key_id}  {partner.pem_path}{note}")

    def _credentials(self, report: demo.SeedReport) -> None:
        self.stdout.write("")
        self.stdout.write(f"  {'username':<10} {'password':<20} role")
        self.stdout.write(f"  {'-' * 10} {'-' * 20} {'-' * 40}")
        for spec, created in report.users:
            password = report.password if created else "(unchanged)"
            self.stdout.write(f"  {spec.username:<10} {password:<20} {spec.label}")
        self.stdout.write(
            "operator, admin, auditor and security will be asked to set up TOTP (an authenticator app) at their first sign-in."
        )
