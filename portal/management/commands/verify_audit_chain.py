"""`python manage.py verify_audit_chain`: chain what is committed, then recompute the audit log's HMAC chain.

Exit status 0 when the chain is intact, 1 (with one line per problem) when a
row was edited, inserted or deleted behind the portal's back. The chain must also
reach the newest signed checkpoint kept outside the database (portal/audit_checkpoint.py)
with the same hash there, and any checkpoint given with `--checkpoint` (a file, or the
JSON line itself as `export_audit_checkpoint` printed it): rows deleted at the end, with
the chain head rewound to match, are found that way.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.audit import ChainProblem, audit_chain_pending, verify_chain
from portal.audit_checkpoint import Checkpoint, CheckpointError, checkpoint_parse, checkpoint_problems, checkpoint_store
from portal.models import AuditChainHead, AuditEvent


def _given_checkpoint(value: str) -> tuple[Checkpoint, str]:
    """The checkpoint given on the command line: its JSON line, or a file holding it."""
    if value.lstrip().startswith("{"):
        return checkpoint_parse(value), "the checkpoint given on the command line"
    try:
        text = Path(value).read_text(encoding="utf-8")
    except OSError as exc:
        raise CheckpointError(f"{value} cannot be read ({exc.strerror})") from None
    return checkpoint_parse(text.strip().splitlines()[-1] if text.strip() else text), value


class Command(BaseCommand):
    help = "Verify the append-only, HMAC-chained audit log; exit 1 if it was tampered with."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=5000, help="rows read per query")
        parser.add_argument(
            "--no-chain", action="store_true", help="verify only: do not chain the committed rows first"
        )
        parser.add_argument(
            "--checkpoint",
            action="append",
            default=[],
            metavar="FILE_OR_JSON",
            help="also check against this checkpoint (a file, or the line export_audit_checkpoint printed)",
        )

    def handle(self, *args, batch_size: int, no_chain: bool = False, checkpoint: list[str], **options) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if not no_chain:
            audit_chain_pending()  # what the beat task would do next; forged rows are left out and reported
        problems = verify_chain(batch_size=batch_size)
        checked = self._check_checkpoints(checkpoint, problems)
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
        for line in checked:
            self.stdout.write(line)

    def _check_checkpoints(self, given: list[str], problems: list[ChainProblem]) -> list[str]:
        """Add the problems found against the newest stored checkpoint and the given ones; the lines
        that say what was checked."""
        store = checkpoint_store()
        checkpoints: list[tuple[Checkpoint, str]] = []
        lines = []
        try:
            newest = store.newest()
        except CheckpointError as exc:
            problems.append(ChainProblem(0, f"the newest checkpoint: {exc}"))
            newest = None
        if newest is not None:
            checkpoints.append((newest, store.describe()))
        elif not given:
            lines.append(f"no checkpoint in {store.describe()} yet: the end of the chain was not checked")
        for value in given:
            try:
                checkpoints.append(_given_checkpoint(value))
            except CheckpointError as exc:
                problems.append(ChainProblem(0, f"the checkpoint given: {exc}"))
        for item, source in checkpoints:
            found = checkpoint_problems(item, source=source)
            problems.extend(found)
            if not found:
                lines.append(f"the chain reaches {item.describe()} in {source}")
        return lines
