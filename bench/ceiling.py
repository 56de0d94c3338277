"""A bare DRF endpoint, the ceiling `bench/verify_bench.py` compares the verify endpoint against.

Mounted at `/api/v1/bench/ceiling` only by bench/urls.py, the URL conf of bench/settings.py,
which the benchmarks that measure the ceiling give their server; never by the project's URLs. It does what
every DRF view does (content negotiation, rendering) and nothing of ours: no
authentication, no database, no signing.
"""

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class BenchCeilingApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    schema = None  # not part of the published schema

    def get(self, request: Request) -> Response:
        return Response({"ok": True})

    def post(self, request: Request) -> Response:
        return Response({"ok": True})
