"""Citizen import screens: upload a file, follow its background job, download
its error report. Jobs come from the user's regions (`portal/scope.py`);
another region's job answers 404 like a missing one. The import itself is
`insurance.imports.jobs.run_import_job`, the code path `manage.py import_citizens`
shares."""

import csv
import io
from pathlib import Path

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET

from insurance.imports import report
from insurance.imports.columns import COLUMNS
from insurance.imports.files import MemoryOnlyUploadHandler
from insurance.imports.jobs import import_job_create
from insurance.imports.reading import (
    ALLOWED_SUFFIXES,
    ImportFileError,
    check_xlsx,
)
from insurance.models import ImportJob
from portal import exports
from portal.actors import Actor
from portal.replica import replica_reads
from portal.scope import regions_visible_to, restrict_to_user_regions
from portal.screens import citizen_writer_required, paginate, region_data_required


class ImportUploadForm(forms.Form):
    region = forms.ModelChoiceField(queryset=None, label=gettext_lazy("Region"), empty_label=None)
    file = forms.FileField(label=gettext_lazy("File (.csv in UTF-8 or .xlsx)"))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["region"].queryset = regions_visible_to(user)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        limit = settings.ECARD_IMPORT_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(
                _("The file is larger than %(limit)s; split it into smaller files.") % {"limit": filesizeformat(limit)}
            )
        suffix = Path(upload.name).suffix.lower()
        if suffix not in ALLOWED_SUFFIXES:
            raise forms.ValidationError(_("Only .csv and .xlsx files can be imported."))
        head = upload.read(4096)
        upload.seek(0)
        if suffix == ".xlsx":
            if not head.startswith(b"PK"):
                raise forms.ValidationError(_("The file is not a readable XLSX workbook."))
            try:
                check_xlsx(upload.file)  # the zip's directory: in memory, nothing unpacked
            except ImportFileError as exc:
                raise forms.ValidationError(str(exc)) from None
            finally:
                upload.seek(0)
        if suffix == ".csv":
            if b"\x00" in head:
                raise forms.ValidationError(_("The file is not a text (CSV) file."))
            try:
                head.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.start < len(head) - 4:  # not merely a character cut at the end of the sample
                    raise forms.ValidationError(_("The file is not UTF-8: save it as CSV UTF-8.")) from None
        return upload


def _jobs_for(user):
    return restrict_to_user_regions(ImportJob.objects.select_related("region", "uploaded_by"), user)


def _job_for(user, pk: int) -> ImportJob:
    return get_object_or_404(_jobs_for(user), pk=pk)


# The uploader's file name is left out: it may name a person (the audit leaves it out too).
IMPORT_COLUMNS = [
    exports.Column(gettext_lazy("Import"), lambda j: j.pk),
    exports.Column(gettext_lazy("Uploaded at"), lambda j: j.created_at),
    exports.RegionColumn(gettext_lazy("Region"), lambda j: j.region_id),
    exports.Column(gettext_lazy("Uploaded by"), lambda j: j.uploaded_by.username),
    exports.Column(gettext_lazy("State"), lambda j: j.get_state_display()),
    exports.Column(gettext_lazy("Rows in the file"), lambda j: j.rows_total),
    exports.Column(gettext_lazy("Created"), lambda j: j.created),
    exports.Column(gettext_lazy("Updated"), lambda j: j.updated),
    exports.Column(gettext_lazy("Failed"), lambda j: j.failed),
    exports.Column(gettext_lazy("Finished at"), lambda j: j.finished_at),
]


@region_data_required
@replica_reads
def import_list(request: HttpRequest) -> HttpResponse:
    if fmt := exports.requested_format(request):
        return exports.export_response(
            request, list_name="citizen_imports", queryset=_jobs_for(request.user), columns=IMPORT_COLUMNS, fmt=fmt
        )
    page = paginate(request, _jobs_for(request.user), per_page=20)
    return render(request, "insurance/import_list.html", {"page": page})


@csrf_exempt  # only so that the upload handlers can be set: _import_upload checks the token
def import_upload(request: HttpRequest) -> HttpResponse:
    # The file holds personal data: kept in memory (up to the cap), never in a temporary file.
    request.upload_handlers = [MemoryOnlyUploadHandler(request, limit=settings.ECARD_IMPORT_MAX_BYTES)]
    return _import_upload(request)


@csrf_protect
@citizen_writer_required
def _import_upload(request: HttpRequest) -> HttpResponse:
    form = ImportUploadForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        job = import_job_create(
            actor=Actor.for_request(request),
            user=request.user,
            region=form.cleaned_data["region"],
            upload=form.cleaned_data["file"],
            language=request.LANGUAGE_CODE,
        )
        return redirect("import_detail", pk=job.pk)
    return render(
        request,
        "insurance/import_upload.html",
        {
            "form": form,
            "columns": COLUMNS,
            "limit": settings.ECARD_IMPORT_MAX_BYTES,
        },
        status=400 if form.errors else 200,
    )


def _status(job: ImportJob) -> dict:
    return {
        "id": job.pk,
        "state": job.state,
        "state_label": job.get_state_display(),
        "finished": job.is_finished,
        "percent": job.percent,
        "rows_total": job.rows_total,
        "rows_done": job.rows_done,
        "created": job.created,
        "updated": job.updated,
        "failed": job.failed,
        "error": job.error,
    }


@region_data_required
def import_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = _job_for(request.user, pk)
    return render(
        request,
        "insurance/import_detail.html",
        {
            "job": job,
            "errors": [(e, report.column_label(e.column)) for e in job.row_errors.all()[:50]],
            "status_url": reverse("import_status", args=[job.pk]),
        },
    )


@region_data_required
def import_status(request: HttpRequest, pk: int) -> JsonResponse:
    job = _job_for(request.user, pk)
    response = JsonResponse(_status(job))
    response["Cache-Control"] = "no-store"
    return response


class _Echo:
    def write(self, value: str) -> str:
        return value


@region_data_required
def import_errors_csv(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The error report, streamed (a large file may have many bad rows); valid while the job runs."""
    job = _job_for(request.user, pk)
    writer = csv.writer(_Echo())

    def lines():
        yield "\ufeff"  # so that spreadsheet programs read the Chinese messages as UTF-8
        yield writer.writerow(report.header())
        errors = job.row_errors.values_list("row", "column", "message", "value")
        for row, column, message, value in errors.iterator(chunk_size=2000):
            yield writer.writerow(report.line(row, column, message, value))

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="import-{job.pk}-errors.csv"'
    return response


def _template_rows() -> list[list[str]]:
    """The header (Chinese names in the Chinese screens) and one example row: no one's data."""
    header = [c.chinese if report.chinese() else c.name for c in COLUMNS]
    return [header, [c.example for c in COLUMNS]]


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@require_GET
@citizen_writer_required
def import_template(request: HttpRequest, fmt: str) -> HttpResponse:
    """A file to fill in: the header and an example row, as CSV (UTF-8 with a BOM) or XLSX."""
    rows = _template_rows()
    if fmt == "csv":
        out = io.StringIO()
        out.write("\ufeff")  # spreadsheet programs read the Chinese header as UTF-8
        csv.writer(out).writerows(rows)
        response = HttpResponse(out.getvalue().encode(), content_type="text/csv; charset=utf-8")
    else:
        from openpyxl import Workbook

        workbook = Workbook()
        sheet = workbook.active
        for row in rows:
            sheet.append(row)
        for cell in sheet[2]:
            cell.data_type = "s"  # the identity number and the phone stay text, not numbers
            cell.number_format = "@"
        buffer = io.BytesIO()
        workbook.save(buffer)
        response = HttpResponse(buffer.getvalue(), content_type=XLSX_TYPE)
    response["Content-Disposition"] = f'attachment; filename="citizen-import-template.{fmt}"'
    return response
