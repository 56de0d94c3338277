"""drf-spectacular extensions: the partner request signature as an OpenAPI security scheme."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PartnerSignatureScheme(OpenApiAuthenticationExtension):
    target_class = "payments.api.auth.PartnerSignatureAuthentication"
    name = "EcardEd25519"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                'ECARD-ED25519 key_id="<key id>",timestamp="<unix seconds>",nonce="<nonce>",signature="<base64>": '
                "an Ed25519 signature over METHOD, request target, timestamp, nonce and body, each line ending in \\n "
                '(PARTNER_API.md "Authentication: signed requests").'
            ),
        }
