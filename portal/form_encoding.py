"""A screen's urlencoded form body that is not UTF-8 is refused with 400.

Django refuses such a body that declares another charset, but reads an undeclared one that is
not valid UTF-8 as Latin-1 (the GBK bytes of 张三 become "ÕÅÈý") and a percent-escape that is not
UTF-8 as U+FFFD: either way the form would get a wrong value that looks like text, and could
store it. A browser sends UTF-8 (the pages are UTF-8), so such a body comes from a broken or
hand-made client: it gets the 400 page and nothing is read from it. Multipart bodies are decoded
by Django with U+FFFD for bad bytes, which the forms refuse (portal/text.py).
"""

from urllib.parse import parse_qsl

from django.core.exceptions import BadRequest
from django.http import HttpRequest, HttpResponse


class FormEncodingMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
            _check_encoding(request)
        return self.get_response(request)


def _check_encoding(request: HttpRequest) -> None:
    try:
        parse_qsl(request.body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise BadRequest("The form body is not in its encoding.") from exc
