from django.http import HttpRequest


def portal(request: HttpRequest) -> dict:
    return {"portal_name_zh": "医保电子凭证管理平台", "portal_name_en": "e-card portal"}
