"""Demo data: the national catalogue, a hospital, a clinic and a pharmacy in
every pilot region, and both schemes' policies for the current and the next
year in every region. Idempotent: what exists is left as it is.

The names and codes are realistic in shape (the service codes follow the
national medical-service price item layout) but illustrative; so are the
prices and the policies' numbers.
"""

import datetime as dt
from dataclasses import dataclass

from django.db import transaction

from insurance.catalogue import facility_create, policy_create_version, service_create, shanghai_today
from insurance.models import Facility, ReimbursementPolicy, Scheme, ServiceItem
from portal.actors import Actor
from portal.models import Region

# code, name_zh, name_en, category, unit, max unit price in fen
SERVICES: tuple[tuple[str, str, str, str, str, int], ...] = (
    ("110100001", "普通门诊挂号费", "Outpatient registration", "registration", "次", 100),
    ("110100002", "专家门诊挂号费", "Specialist registration", "registration", "次", 500),
    ("110200001", "普通门诊诊查费", "Outpatient consultation", "consultation", "次", 1000),
    ("110200002", "副主任医师诊查费", "Associate chief physician consultation", "consultation", "次", 2500),
    ("110200003", "主任医师诊查费", "Chief physician consultation", "consultation", "次", 4000),
    ("110200005", "急诊诊查费", "Emergency consultation", "consultation", "次", 1500),
    ("250101015", "血细胞分析（血常规）", "Complete blood count", "lab_test", "次", 2000),
    ("250102001", "尿常规", "Urinalysis", "lab_test", "次", 1000),
    ("250302001", "血清葡萄糖测定（空腹血糖）", "Fasting blood glucose", "lab_test", "项", 600),
    ("250305001", "肝功能检查", "Liver function panel", "lab_test", "次", 6000),
    ("250307001", "血脂四项", "Lipid panel", "lab_test", "次", 4000),
    ("250403001", "新型冠状病毒核酸检测", "SARS-CoV-2 nucleic acid test", "lab_test", "次", 1600),
    ("210102015", "胸部正位X线摄影", "Chest X-ray", "imaging", "次", 6000),
    ("210300001", "头颅CT平扫", "Head CT, plain scan", "imaging", "次", 25000),
    ("210300002", "胸部CT平扫", "Chest CT, plain scan", "imaging", "次", 28000),
    ("220201001", "腹部B超", "Abdominal ultrasound", "imaging", "次", 8000),
    ("210200001", "头颅磁共振平扫", "Head MRI, plain scan", "imaging", "次", 60000),
    ("XJ01CAA040A001", "阿莫西林胶囊 0.25g×24粒", "Amoxicillin capsules 0.25 g x 24", "drug_a", "盒", 1500),
    ("XA10BAD046A001", "盐酸二甲双胍片 0.5g×20片", "Metformin tablets 0.5 g x 20", "drug_a", "盒", 800),
    ("XB01ACA056A001", "阿司匹林肠溶片 100mg×30片", "Aspirin enteric tablets 100 mg x 30", "drug_a", "盒", 1600),
    ("XC08CAA010A001", "苯磺酸氨氯地平片 5mg×7片", "Amlodipine tablets 5 mg x 7", "drug_a", "盒", 1200),
    ("XA02BCA060A001", "奥美拉唑肠溶胶囊 20mg×14粒", "Omeprazole capsules 20 mg x 14", "drug_a", "盒", 1800),
    ("XC10AAA050B001", "阿托伐他汀钙片 20mg×7片", "Atorvastatin tablets 20 mg x 7", "drug_b", "盒", 3500),
    ("XA10AEA020B001", "甘精胰岛素注射液 3ml:300单位", "Insulin glargine 300 U / 3 ml", "drug_b", "支", 18000),
    ("ZA01AAL0001B001", "连花清瘟胶囊 0.35g×24粒", "Lianhua Qingwen capsules 0.35 g x 24", "drug_b", "盒", 1600),
    ("XR06AXL050B001", "氯雷他定片 10mg×6片", "Loratadine tablets 10 mg x 6", "drug_b", "盒", 2000),
    ("NC0000000001", "阿胶块 250g", "Donkey-hide gelatin 250 g", "non_catalogue", "盒", 150000),
    ("NC0000000002", "维生素C泡腾片 1g×20片", "Vitamin C effervescent tablets 1 g x 20", "non_catalogue", "盒", 3000),
    ("NC0000000003", "多维元素片 100片", "Multivitamin tablets x 100", "non_catalogue", "瓶", 12000),
    ("OT0000000001", "一次性医用口罩 10只", "Disposable medical masks x 10", "other", "包", 1000),
    ("OT0000000002", "病历本工本费", "Medical record booklet", "other", "本", 100),
)

# region: (hospital zh, hospital en, clinic zh, clinic en, pharmacy zh, pharmacy en)
FACILITIES: dict[str, tuple[str, str, str, str, str, str]] = {
    "130000": (
        "河北医科大学第二医院",
        "Second Hospital of Hebei Medical University",
        "石家庄市长安区建北社区卫生服务中心",
        "Jianbei Community Health Centre, Shijiazhuang",
        "石家庄乐仁堂大药房（中山路店）",
        "Lerentang Pharmacy, Zhongshan Road, Shijiazhuang",
    ),
    "220000": (
        "吉林大学第一医院",
        "First Hospital of Jilin University",
        "长春市朝阳区南湖社区卫生服务中心",
        "Nanhu Community Health Centre, Changchun",
        "长春大药房（人民大街店）",
        "Changchun Pharmacy, Renmin Street",
    ),
    "230000": (
        "哈尔滨医科大学附属第一医院",
        "First Affiliated Hospital of Harbin Medical University",
        "哈尔滨市南岗区大成社区卫生服务中心",
        "Dacheng Community Health Centre, Harbin",
        "哈尔滨人民同泰大药房（中央大街店）",
        "Renmin Tongtai Pharmacy, Central Street, Harbin",
    ),
    "310000": (
        "上海市第一人民医院",
        "Shanghai General Hospital",
        "上海市黄浦区外滩街道社区卫生服务中心",
        "Waitan Community Health Centre, Huangpu, Shanghai",
        "上海雷允上药房（南京东路店）",
        "Leiyunshang Pharmacy, East Nanjing Road, Shanghai",
    ),
    "350000": (
        "福建医科大学附属协和医院",
        "Fujian Medical University Union Hospital",
        "福州市鼓楼区东街街道社区卫生服务中心",
        "Dongjie Community Health Centre, Fuzhou",
        "福州惠好四海大药房（东街店）",
        "Huihao Sihai Pharmacy, Dongjie, Fuzhou",
    ),
    "370000": (
        "山东大学齐鲁医院",
        "Qilu Hospital of Shandong University",
        "济南市历下区泉城路社区卫生服务中心",
        "Quanchenglu Community Health Centre, Jinan",
        "漱玉平民大药房（泉城路店）",
        "Shuyu Pingmin Pharmacy, Quancheng Road, Jinan",
    ),
    "440000": (
        "中山大学附属第一医院",
        "First Affiliated Hospital, Sun Yat-sen University",
        "广州市越秀区北京街社区卫生服务中心",
        "Beijingjie Community Health Centre, Guangzhou",
        "大参林大药房（北京路店）",
        "Dashenlin Pharmacy, Beijing Road, Guangzhou",
    ),
}

# region: employee (deductible, ratio, cap), resident (deductible, ratio, cap, premium); fen.
POLICIES: dict[str, tuple[tuple[int, str, int], tuple[int, str, int, int]]] = {
    "130000": ((30000, "0.75", 40_000_000), (20000, "0.55", 15_000_000, 38000)),
    "220000": ((30000, "0.75", 35_000_000), (20000, "0.55", 15_000_000, 38000)),
    "230000": ((30000, "0.75", 35_000_000), (20000, "0.55", 15_000_000, 38000)),
    "310000": ((150000, "0.80", 60_000_000), (50000, "0.65", 30_000_000, 42000)),
    "350000": ((30000, "0.75", 40_000_000), (20000, "0.60", 20_000_000, 38000)),
    "370000": ((30000, "0.75", 40_000_000), (20000, "0.60", 20_000_000, 38000)),
    "440000": ((40000, "0.80", 50_000_000), (20000, "0.60", 25_000_000, 40000)),
}
# Provinces set the share of class B drugs the citizen pays first (DESIGN.md section 4).
SHARE_OVERRIDES: dict[str, dict[str, str]] = {"370000": {"drug_b": "0.85"}, "230000": {"drug_b": "0.95"}}
NEXT_YEAR_PREMIUM_RISE_FEN = 2000

FACILITY_PREFIX = {"hospital": "H", "clinic": "C", "pharmacy": "P"}


def facility_code(kind: str, region_code: str) -> str:
    return f"{FACILITY_PREFIX[kind]}{region_code}001"


@dataclass
class CatalogueSeedReport:
    services_created: int = 0
    facilities_created: int = 0
    policies_created: int = 0


@transaction.atomic
def seed_catalogue(*, actor: Actor | None = None, today: dt.date | None = None) -> CatalogueSeedReport:
    """Create whatever of the demo catalogue, facilities and policies is missing."""
    actor = actor or Actor.system("seed_demo")
    today = today or shanghai_today()
    report = CatalogueSeedReport()

    existing_services = set(ServiceItem.objects.values_list("code", flat=True))
    for code, name_zh, name_en, category, unit, max_price in SERVICES:
        if code not in existing_services:
            service_create(
                actor=actor,
                code=code,
                name_zh=name_zh,
                name_en=name_en,
                category=category,
                unit=unit,
                max_unit_price_fen=max_price,
            )
            report.services_created += 1

    regions = {region.code: region for region in Region.objects.filter(code__in=FACILITIES)}
    existing_facilities = set(Facility.objects.values_list("code", flat=True))
    for region_code, names in FACILITIES.items():
        region = regions.get(region_code)
        if region is None:
            continue  # regions are seeded first; a region missing here is not a pilot region of this deployment
        for index, kind in enumerate(("hospital", "clinic", "pharmacy")):
            code = facility_code(kind, region_code)
            if code not in existing_facilities:
                facility_create(
                    actor=actor,
                    code=code,
                    name_zh=names[2 * index],
                    name_en=names[2 * index + 1],
                    kind=kind,
                    region=region,
                )
                report.facilities_created += 1

    existing_policies = set(ReimbursementPolicy.objects.values_list("region_id", "scheme", "year"))
    for region_code, (employee, resident) in POLICIES.items():
        region = regions.get(region_code)
        if region is None:
            continue
        for year in (today.year, today.year + 1):
            for scheme, numbers in ((Scheme.EMPLOYEE, employee), (Scheme.RESIDENT, resident)):
                if (region_code, scheme.value, year) in existing_policies:
                    continue
                premium = None
                if scheme == Scheme.RESIDENT:
                    premium = numbers[3] + (NEXT_YEAR_PREMIUM_RISE_FEN if year > today.year else 0)
                policy_create_version(
                    actor=actor,
                    region=region,
                    scheme=scheme.value,
                    year=year,
                    effective_from=dt.date(year, 1, 1),
                    deductible_fen=numbers[0],
                    ratio=numbers[1],
                    annual_cap_fen=numbers[2],
                    personal_account_allowed=scheme == Scheme.EMPLOYEE,
                    eligible_shares=SHARE_OVERRIDES.get(region_code),
                    premium_fen=premium,
                    today=today,
                )
                report.policies_created += 1
    return report
