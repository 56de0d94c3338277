from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect("citizen_search")


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})
