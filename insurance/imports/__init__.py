"""Bulk import of citizens (PARTNER_API.md "Provisioning").

One code path for `manage.py import_citizens` and the portal's background
import screen, by subject:

- `reading`: stream the rows of a CSV or XLSX file;
- `validation`: check one row, with errors that never repeat its personal data;
- `writing`: import rows in batches, one transaction each: new citizens in
  bulk (`store`, binary COPY), updates and refused batches row by row through
  the services;
- `jobs`: the background job behind the screen and its Celery tasks.
"""
