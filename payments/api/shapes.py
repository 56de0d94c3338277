"""Output shapes embedded in several partner objects (PARTNER_API.md "Objects"), declared once
so that the OpenAPI schema has one `Citizen` and one `Certificate` component."""

from rest_framework import serializers

CERTIFICATE_STATES = ["pending_activation", "active", "suspended", "revoked", "expired"]


class CitizenOutputSerializer(serializers.Serializer):
    """Citizen as partners see it: masked."""

    name_masked = serializers.CharField()
    id_number_masked = serializers.CharField()
    region_code = serializers.CharField()
    scheme = serializers.ChoiceField(choices=["employee", "resident"])


class CertificateOutputSerializer(serializers.Serializer):
    number = serializers.CharField()
    state = serializers.ChoiceField(choices=CERTIFICATE_STATES)
    expires_at = serializers.DateTimeField()
