"""`python manage.py verify_audit_chain`: chain what is committed, then recompute the audit log's HMAC chain.

Exit status 0 when the chain is intact, 1 (with one line per problem) when a
row was edited, inserted or deleted behind the portal's back.
"""

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.audit import audit_chain_pending, verify_chain
from portal.models import AuditChainHead, AuditEvent


class Command(BaseCommand):
    help = "Verify the append-only, HMAC-chained audit log; exit 1 if it was tampered with."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=5000, help="rows read per query")
        parser.add_argument(
            "--no-chain", action="store_true", help="verify only: do not chain the committed rows first"
        )

    def handle(self, *args, batch_size: int, no_chain: bool = False, **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if not no_chain:
            audit_chain_pending()  # what the beat task would do next; forged rows are left out and reported
        problems = verify_chain(batch_size=batch_size)
        if problems:
            for problem in problems:
                self.stderr.write(f"PROBLEM {problem}")
            raise CommandError(f"audit chain BROKEN: {len(problems)} problem(s) found", returncode=1)
        head = AuditChainHead.objects.filter(id=1).first()
        count = AuditEvent.objects.count()
        last = head.last_seq if head else 0
        pending = AuditEvent.objects.filter(chain_seq__isnull=True).count()
        self.stdout.write(
            self.style.SUCCESS(
                f"audit chain intact: {count} events, last chain position {last}, {pending} sealed and not chained yet"
            )
        )
