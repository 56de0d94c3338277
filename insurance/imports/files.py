"""An import's uploaded file at rest: it holds identity numbers, names and phones, so it
is never written in clear. The upload is kept in memory by the upload screen
(`MemoryOnlyUploadHandler`, up to the upload cap), encrypted chunk by chunk as it
is stored (`portal.crypto.encrypt_chunks`), decrypted as a stream by the job, and
deleted when the job ends."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePath
from typing import BinaryIO

from django.core.files import File
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from portal.crypto import FILE_CHUNK_BYTES, DecryptingReader, encrypt_chunks

PURPOSE = "citizen_import.file"
ENCRYPTED_SUFFIX = ".enc"


class _EncryptedUpload(File):
    """The upload as the storage writes it: its chunks encrypted on the way."""

    def __init__(self, upload) -> None:
        super().__init__(None, name=upload.name)
        self._upload = upload

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        return encrypt_chunks(self._upload.chunks(), purpose=PURPOSE)


def store_upload(job, upload, fmt: str) -> None:
    """Save `upload` encrypted as the job's file (not the job itself)."""
    job.file.save(f"upload.{fmt}{ENCRYPTED_SUFFIX}", _EncryptedUpload(upload), save=False)


def upload_format(job) -> str:
    """ "csv" or "xlsx": the format the file was uploaded as."""
    suffixes = PurePath(job.file.name).suffixes
    return suffixes[0].lstrip(".") if suffixes else ""


@contextmanager
def open_upload(job) -> Iterator[BinaryIO]:
    """The job's file, decrypted as it is read (FileTampered from a chunk that was altered)."""
    raw = job.file.storage.open(job.file.name, "rb")
    try:
        if not job.file.name.endswith(ENCRYPTED_SUFFIX):
            yield raw  # a job queued before uploads were encrypted
            return
        with io.BufferedReader(DecryptingReader(raw, purpose=PURPOSE), buffer_size=FILE_CHUNK_BYTES) as plain:
            yield plain
    finally:
        raw.close()


class MemoryOnlyUploadHandler(FileUploadHandler):
    """Keeps the request's files in memory, `limit` bytes in all, so that no upload is ever
    written to a temporary file in clear (Django's TemporaryFileUploadHandler would for
    any file over FILE_UPLOAD_MAX_MEMORY_SIZE). What comes past the limit is counted but
    dropped: the file's size tells the form to refuse it."""

    def __init__(self, request=None, *, limit: int) -> None:
        super().__init__(request)
        self.limit = limit
        self.kept = 0  # across every file of the request

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.data = io.BytesIO()
        self.size = 0
        self.dropped = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.size += len(raw_data)
        room = self.limit - self.kept
        if room > 0:
            kept = raw_data[:room]
            self.data.write(kept)
            self.kept += len(kept)
        self.dropped = self.dropped or len(raw_data) > room
        return None

    def file_complete(self, file_size: int) -> InMemoryUploadedFile:
        self.data.seek(0)
        if self.dropped:  # cut short, even if by an earlier file of the request: too large
            self.size = max(self.size, self.limit + 1)
        return InMemoryUploadedFile(
            file=self.data,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=self.size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
