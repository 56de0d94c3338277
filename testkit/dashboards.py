"""A busy day of issuing, linking, binding, settling and refunding, for the dashboard tests."""

import datetime as dt

from insurance import services as insurance_services
from insurance.models import Certificate
from payments.models import Settlement
from payments.settlements import services as settlements
from testkit.settlements import SYSTEM, bound, insured, lines, linked, make_wallet, token

BILL = [("REG", 1, 2000), ("DRUGA", 3, 10_000)]


def settle(partner, linkage) -> Settlement:
    created = settlements.settlement_create(
        actor=SYSTEM,
        partner=partner,
        token=token(linkage),
        facility_code="H310-1",
        lines=lines(*BILL),
        use_personal_account=False,
    )
    return settlements.settlement_confirm(
        actor=SYSTEM, settlement=created, partner_transaction_id=f"tx-{created.pk}", self_pay_fen=created.self_pay_fen
    )


def busy_day(regions) -> dict:
    """Issue, activate, suspend, revoke, reissue, bind, settle, refund: most of what moves a count."""
    wechat, alipay = make_wallet(), make_wallet()
    first = linked(wechat, regions)
    second = linked(alipay, regions, birth=dt.date(1940, 5, 5))
    linked(wechat, regions, region_code="440000")
    binding = bound(wechat, first, regions)
    paid = settle(wechat, first)
    settle(alipay, second)
    settlements.settlement_refund(actor=SYSTEM, settlement=paid, reason="returned")
    pending, _ = insured(regions, region_code="130000", birth=dt.date(1930, 1, 1))
    card = Certificate.objects.get(citizen=second.citizen, state="active")
    insurance_services.certificate_suspend(actor=SYSTEM, certificate=card, reason="lost phone")
    insurance_services.certificate_reissue(actor=SYSTEM, certificate=Certificate.objects.get(pk=card.pk), reason="new")
    gone, _ = insured(regions, region_code="310000")
    insurance_services.citizen_set_status(actor=SYSTEM, citizen=gone, status="deceased", reason="register office")
    return {
        "wechat": wechat,
        "alipay": alipay,
        "first": first,
        "second": second,
        "binding": binding,
        "pending": pending,
    }
