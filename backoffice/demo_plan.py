"""The demo's plan: who the demo citizens are and what happens to their e-cards.

Pure data from a fixed random seed, so two runs on any machine plan the same
citizens (backoffice/demo.py carries the plan out through the services).
"""

import datetime as dt
import random
from dataclasses import dataclass, field

from django.utils import timezone

from insurance.identity import make_identity_number
from insurance.models import Scheme
from portal.regions import PilotRegion, pilot_regions

DEMO_SEED = 20191124  # the pilot's start date: the same plan on every machine

# The pilot regions by code (portal/data/pilot_regions.csv, which the migration loads too).
PILOT_REGIONS: dict[str, PilotRegion] = {region.code: region for region in pilot_regions()}

# Real GB/T 2260 districts inside each pilot province, for identity numbers.
DISTRICTS: dict[str, tuple[str, ...]] = {
    "130000": (
        "130102",
        "130104",
        "130202",
        "130203",
        "130302",
        "130602",
    ),  # Shijiazhuang, Tangshan, Qinhuangdao, Baoding
    "220000": ("220102", "220103", "220104", "220202", "220204"),  # Changchun, Jilin city
    "230000": ("230102", "230103", "230104", "230202", "230602"),  # Harbin, Qiqihar, Daqing
    "310000": ("310101", "310104", "310105", "310106", "310107", "310110", "310115"),  # Shanghai districts
    "350000": ("350102", "350103", "350203", "350206", "350503"),  # Fuzhou, Xiamen, Quanzhou
    "370000": ("370102", "370103", "370202", "370203", "370602"),  # Jinan, Qingdao, Yantai
    "440000": ("440103", "440104", "440106", "440303", "440304", "440305"),  # Guangzhou, Shenzhen
}
# Roughly the provinces' relative populations, Shanghai raised so its staff see plenty.
REGION_WEIGHTS: dict[str, int] = {
    "130000": 14,
    "220000": 8,
    "230000": 10,
    "310000": 16,
    "350000": 12,
    "370000": 18,
    "440000": 22,
}

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
    "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官")
MALE_GIVEN = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林欢阳建国志文博昊然睿轩"
FEMALE_GIVEN = "芳娜敏静丽艳娟霞秀玲桂英红梅琳颖洁婷雪慧倩佳欣悦怡晶燕萍媛蕾薇琪涵萱璐瑶"
PHONE_PREFIXES = (
    "130",
    "131",
    "132",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "158",
    "159",
    "177",
    "180",
    "181",
    "186",
    "187",
    "188",
    "189",
    "199",
)

# What happens to each citizen's e-card(s), with its weight out of 100.
STORIES: dict[str, int] = {
    "no_card": 4,
    "pending": 13,
    "pending_revoked": 2,
    "active": 42,
    "active_unlinked": 5,
    "suspended": 6,
    "revoked": 4,
    "expired": 4,
    "expired_reissued": 2,
    "reissued": 8,
    "suspended_reissued": 2,
    "moved_out": 4,
    "deceased": 4,
}
# Age bands (inclusive) and their weights: many over 60, some over 80.
AGE_BANDS: tuple[tuple[int, int, int], ...] = ((0, 17, 14), (18, 39, 26), (40, 59, 28), (60, 79, 23), (80, 99, 9))

PARTNERS: tuple[tuple[str, str], ...] = (
    ("wechat_pay", "微信支付 / WeChat Pay"),
    ("alipay", "支付宝 / Alipay"),
)


# --- The plan (pure data, deterministic) -------------------------------------


@dataclass(frozen=True)
class CitizenPlan:
    id_number: str
    name: str
    phone: str
    region_code: str
    scheme: str
    story: str
    partners: tuple[str, ...]
    partner_refs: dict[str, str] = field(default_factory=dict, hash=False)
    reissues: int = 1


def _weighted(rng: random.Random, table: dict[str, int]) -> str:
    return rng.choices(list(table), weights=list(table.values()))[0]


def _birth_date(rng: random.Random, today: dt.date, low: int, high: int) -> dt.date:
    age = rng.randint(low, high)
    return today - dt.timedelta(days=int(age * 365.25) + rng.randint(0, 364))


def _name(rng: random.Random, male: bool) -> str:
    surname = rng.choice(COMPOUND_SURNAMES) if rng.random() < 0.02 else rng.choice(SURNAMES)
    pool = MALE_GIVEN if male else FEMALE_GIVEN
    given = rng.choice(pool) + (rng.choice(pool) if rng.random() < 0.7 else "")
    return surname + given


def _partner_ref(rng: random.Random, code: str) -> str:
    if code == "wechat_pay":  # an openid-like reference
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return "o" + "".join(rng.choice(alphabet) for _ in range(27))
    return "2088" + "".join(rng.choice("0123456789") for _ in range(12))  # an Alipay user id


def plan_citizens(count: int, *, seed: int = DEMO_SEED, today: dt.date | None = None) -> list[CitizenPlan]:
    """`count` citizens; the first ones cycle through every story so that a small demo has them all."""
    rng = random.Random(seed)
    today = today or timezone.localdate()
    story_names = list(STORIES)
    taken: set[str] = set()
    plans: list[CitizenPlan] = []
    for index in range(count):
        story = story_names[index] if index < len(story_names) else _weighted(rng, STORIES)
        region_code = rng.choices(list(REGION_WEIGHTS), weights=list(REGION_WEIGHTS.values()))[0]
        if story == "deceased":
            low, high = 70, 99
        else:
            low, high, _ = rng.choices(AGE_BANDS, weights=[band[2] for band in AGE_BANDS])[0]
        birth = _birth_date(rng, today, low, high)
        male = rng.random() < 0.5
        while True:
            sequence = rng.randrange(0, 1000, 2) + (1 if male else 0)
            id_number = make_identity_number(rng.choice(DISTRICTS[region_code]), birth, sequence)
            if id_number not in taken:
                taken.add(id_number)
                break
        age = today.year - birth.year
        if age < 18:
            scheme = Scheme.RESIDENT
        elif age < 60:
            scheme = Scheme.EMPLOYEE if rng.random() < 0.62 else Scheme.RESIDENT
        else:
            scheme = Scheme.EMPLOYEE if rng.random() < 0.45 else Scheme.RESIDENT
        # Young children and some of the very old have no phone of their own.
        no_phone = (age < 12 and rng.random() < 0.8) or (age >= 80 and rng.random() < 0.3)
        phone = "" if no_phone else rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}"
        draw = rng.random()
        partners = ("wechat_pay",) if draw < 0.55 else ("alipay",) if draw < 0.75 else ("wechat_pay", "alipay")
        plans.append(
            CitizenPlan(
                id_number=id_number,
                name=_name(rng, male),
                phone=phone,
                region_code=region_code,
                scheme=str(scheme),
                story=story,
                partners=partners,
                partner_refs={code: _partner_ref(rng, code) for code in partners},
                reissues=2 if story == "reissued" and rng.random() < 0.35 else 1,
            )
        )
    return plans
