"""Webhooks go to public addresses only in production (PARTNER_API.md "Provisioning"): an address
in the URL is refused when it is set, and a name that resolves to an inner address is refused when
the delivery connects."""

import pytest
import urllib3
from django.test import override_settings
from urllib3.exceptions import NewConnectionError

from payments.delivery import addresses
from payments.delivery import services as delivery
from payments.partners import services as partners
from portal.errors import DomainError

INNER = [
    "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "https://10.0.0.5:8080/",
    "https://172.16.3.4/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",  # shared address space
    "https://2130706433/",  # 127.0.0.1 as one number
    "https://0x7f.1/",
    "https://127.1/",
    "https://127.0.0.1/",
    "https://localhost/",
    "https://[::1]/",
    "https://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "https://[::ffff:a9fe:a9fe]/",
    "https://[fd00::1]/",  # unique local
    "https://[fe80::1]/",
    "https://0.0.0.0/",
    "https://224.0.0.1/",
]


@override_settings(ECARD_WEBHOOK_PUBLIC_ONLY=True)
@pytest.mark.parametrize("url", INNER)
def test_a_production_portal_refuses_webhook_urls_to_inner_addresses(url):
    with pytest.raises(DomainError) as refused:
        partners.clean_webhook_url(url)
    assert refused.value.code == "validation_error"


@override_settings(ECARD_WEBHOOK_PUBLIC_ONLY=True)
@pytest.mark.parametrize("url", ["https://pay.example.cn/hook", "https://8.8.8.8/hook", "https://[2001:4860::8888]/h"])
def test_a_production_portal_accepts_public_https_webhook_urls(url):
    assert partners.clean_webhook_url(url) == url


def test_a_delivery_does_not_connect_to_an_inner_address_whatever_the_name_resolves_to(httpserver):
    httpserver.expect_request("/hook").respond_with_data("ok")
    url = httpserver.url_for("/hook").replace("127.0.0.1", "localhost")
    assert urllib3.PoolManager(retries=False).request("POST", url).status == 200  # reachable
    with pytest.raises(NewConnectionError):
        addresses.public_only(urllib3.PoolManager(retries=False)).request("POST", url)
    assert len(httpserver.log) == 1  # the refused delivery never reached the server


def test_the_delivery_client_is_public_only_in_production(settings):
    settings.ECARD_WEBHOOK_PUBLIC_ONLY = True
    delivery._client = None
    try:
        client, _ = delivery._http()
        assert client.pool_classes_by_scheme["https"] is addresses.PublicHTTPSConnectionPool
        assert client.pool_classes_by_scheme["http"] is addresses.PublicHTTPConnectionPool
    finally:
        delivery._client = None  # the next test builds its own for its settings
