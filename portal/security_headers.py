"""Content-Security-Policy and Permissions-Policy for the screens.

The screens load scripts and styles from the portal's own static files only and carry no
inline script, style attribute or event handler, so the policy can forbid every inline
script: an injected `<script>` or `onerror=` does not run even where escaping failed.
Images may be `data:` URLs (allauth shows the TOTP set-up QR code as one).

The partner API (`/api/v1/`, including its Swagger UI page) is left alone: it returns
signed JSON, not screens, its answers are the same whichever way they go through the
middleware (PartnerApiMiddleware answers it before this one runs), and the Swagger UI
page needs an inline start-up script of its own.

Referrer-Policy is Django's own SECURE_REFERRER_POLICY (SecurityMiddleware).
"""

from django.http import HttpRequest, HttpResponse

from portal.middleware import PartnerApiMiddleware

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
# The portal needs none of these browser features; a script that got in cannot ask for them.
PERMISSIONS_POLICY = ", ".join(
    f"{feature}=()"
    for feature in (
        "accelerometer",
        "camera",
        "display-capture",
        "geolocation",
        "gyroscope",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "usb",
    )
)


class SecurityHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path_info.startswith(PartnerApiMiddleware.PREFIX):
            return response
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
