"""A Keboola Storage file, downloaded as the official clients download it, into one stream.

``GET /v2/storage/files/{id}?federationToken=1`` answers where the file lies and credentials to read it,
per file storage backend (``provider``): ``aws`` (S3: ``s3Path{bucket,key}``, ``region``,
``credentials{AccessKeyId,SecretAccessKey,SessionToken}``), ``azure`` (Blob Storage: ``absPath{container,
name}``, ``absCredentials{SASConnectionString}``) or ``gcp`` (GCS: ``gcsPath{bucket,key}``,
``gcsCredentials{access_token,projectId}``). A sliced file (``isSliced``, every table export on the
Snowflake and Redshift backends) is a manifest ``{"entries": [{"url": ...}]}`` of slices: on aws and gcp
the manifest is behind the detail's signed ``url``, on azure it is the blob ``absPath.name + "manifest"``.
Sources: ../shared/DESIGN.md "Keboola Storage facts"; kbcstorage 0.12.0 ``Files.download`` and
``Tables.export_to_file``; the PHP client's ``TableExporter`` and ``Downloader/*`` (keboola/
storage-api-php-client): a slice's key is the entry URL after ``scheme://bucket/``, read from the
detail's bucket; an Azure entry is ``azure://ACCOUNT.blob.core.windows.net/CONTAINER/PATH``.

What this module adds to those clients: nothing lands on a disk and nothing is held whole in memory
(slices stream one after the other); a table export gets its header row (exports are headerless) as the
clients write it, ``"col1","col2"`` + ``\\n``, as its own gzip member when the slices are gzip, so the
result is one valid gzip; compression is read from the bytes (gzip magic), not assumed; and storage that
refuses the credentials mid-way (they expired) makes it ask for the file detail again and go on with the
same slice, so nothing is written twice. A slice that is not there, a manifest that does not parse and
credentials refused again right after a refresh each end the download with their own code.

S3 is read with boto3 (in the Lambda runtime) and the file's temporary credentials; its endpoint
follows the standard configuration (``AWS_ENDPOINT_URL_S3``). Azure and GCS are plain HTTP GETs through
tracker.providers.http: the SAS from the connection string, and the GCS JSON API media download with the
access token (endpoint ``STORAGE_EMULATOR_HOST`` when set, as Google's clients allow).
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from tracker.errors import ProviderAuthError, ProviderRejectedError, ProviderTransientError
from tracker.providers.http import GZIP_MAGIC, ObjectMissing, ObjectRefused, ProviderHttp

CHUNK_BYTES = 256 * 1024
#: Fresh credentials a slice may need in a row: the first set, then up to two from fresh file details.
CREDENTIAL_ATTEMPTS = 3
GCS_ENDPOINT = "https://storage.googleapis.com"
AZURE_VERSION = "2021-08-06"  # x-ms-version of the Blob service REST API the GETs speak
_AZURE_ENTRY = re.compile(
    r"^(?:https|azure)://(?P<account>[^/]*?)\.blob\.core\.windows\.net/(?P<container>[^/]+)/(?P<path>.+)$"
)
_ENTRY_SCHEMES = {"aws": "s3://", "gcp": "gs://"}
# S3's answers to credentials it will not take: expired (ExpiredToken is a 400), revoked or wrong.
_S3_REFUSALS = frozenset(
    {
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidToken",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "RequestExpired",
        "AuthorizationHeaderMalformed",
    }
)
_S3_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "404"})


def header_row(columns: list[str]) -> bytes:
    """The header the official clients write before a headerless export: every name in double quotes,
    joined by commas, LF-terminated (kbcstorage ``'"{}"'.format(col)`` joined by ``,`` + ``\\n``; the PHP
    TableExporter's ``$enclosure . join($enclosure . $delimiter . $enclosure, $columns) . $enclosure .
    "\\n"``). Column names are ``[A-Za-z0-9_]`` in Keboola, so nothing inside needs escaping; a quote is
    doubled anyway, as RFC 4180 would."""
    return (",".join('"' + str(name).replace('"', '""') + '"' for name in columns) + "\n").encode()


def is_gzip(head: bytes) -> bool:
    return head.startswith(GZIP_MAGIC)


# -- the file detail ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Slice:
    """One object to read: the whole file, or one slice of it (``where`` names it in messages)."""

    bucket: str  # S3/GCS bucket, Azure container
    key: str  # S3 key, GCS object name, Azure blob name
    where: str  # "slice 3 of 5" or "the file"


class ObjectReader(Protocol):
    """Reads objects of one file storage backend with one set of credentials."""

    def head(self, obj: Slice) -> bytes:
        """The object's first bytes (at most a few), to see what it is."""
        ...

    def chunks(self, obj: Slice) -> Iterator[bytes]:
        """The object's bytes. Raises ObjectRefused before the first chunk when the credentials are
        refused and ObjectMissing when there is no such object; both only before anything is yielded."""
        ...


@dataclass(frozen=True, slots=True)
class FileDetail:
    """What the tracker needs of ``GET /v2/storage/files/{id}?federationToken=1``."""

    file_id: str
    name: str
    backend: str  # aws | azure | gcp
    sliced: bool
    url: str  # signed URL of the file, or of the manifest when sliced
    location: Slice  # where the file (or, sliced, the manifest's base name) lies
    reader: ObjectReader

    @classmethod
    def parse(cls, detail: Any, file_id: str, http: ProviderHttp) -> FileDetail:
        if not isinstance(detail, dict):
            raise ProviderTransientError(f"Keboola file {file_id} detail is not an object")
        backend = str(detail.get("provider") or "aws")  # stacks older than multi-cloud send no provider
        sliced = detail.get("isSliced") is True
        name = str(detail.get("name") or f"file-{file_id}")
        url = detail.get("url") if isinstance(detail.get("url"), str) else ""
        if backend == "aws":
            path, creds = _fields(detail, file_id, "s3Path", ("bucket", "key"), "credentials")
            location = Slice(path["bucket"], path["key"], "the file")
            reader: ObjectReader = S3Reader(creds, str(detail.get("region") or "us-east-1"))
        elif backend == "azure":
            path, creds = _fields(detail, file_id, "absPath", ("container", "name"), "absCredentials")
            location = Slice(path["container"], path["name"], "the file")
            reader = BlobReader(http, creds)
        elif backend == "gcp":
            path, creds = _fields(detail, file_id, "gcsPath", ("bucket", "key"), "gcsCredentials")
            location = Slice(path["bucket"], path["key"], "the file")
            reader = GcsReader(http, creds)
        else:
            raise ProviderRejectedError(
                f"Keboola file {file_id} is on file storage {backend!r}, not aws, azure or gcp", code="unknown_backend"
            )
        if sliced and backend != "azure" and not url:
            raise ProviderTransientError(f"Keboola file {file_id} detail has no manifest url")
        return cls(str(file_id), name, backend, sliced, url, location, reader)


def _fields(
    detail: dict[str, Any], file_id: str, path_field: str, path_keys: tuple[str, ...], creds_field: str
) -> tuple[dict[str, str], dict[str, Any]]:
    path = detail.get(path_field)
    creds = detail.get(creds_field)
    if not isinstance(path, dict) or not all(isinstance(path.get(k), str) and path[k] for k in path_keys):
        raise ProviderTransientError(f"Keboola file {file_id} detail has no {path_field}{{{','.join(path_keys)}}}")
    if not isinstance(creds, dict):
        # federationToken=1 was asked for: a detail without credentials is a token that may not read files.
        raise ProviderAuthError(
            f"Keboola gave no {creds_field} for file {file_id} (does the token may read files?)",
            code="credentials_refused",
        )
    return path, creds


def slices_from_manifest(raw: bytes, detail: FileDetail) -> list[Slice]:
    """The manifest's entries, in order, as objects to read; anything else is ``manifest_malformed``."""

    def malformed(why: str) -> ProviderRejectedError:
        return ProviderRejectedError(
            f"Keboola file {detail.file_id} ({detail.name}) has a malformed manifest: {why}", code="manifest_malformed"
        )

    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise malformed("not JSON") from None
    entries = manifest.get("entries") if isinstance(manifest, dict) else None
    if not isinstance(entries, list):
        raise malformed('no "entries" list')
    out: list[Slice] = []
    for number, entry in enumerate(entries, 1):
        url = entry.get("url") if isinstance(entry, dict) else None
        if not isinstance(url, str):
            raise malformed(f"entry {number} has no url")
        where = f"slice {number} of {len(entries)}"
        if detail.backend == "azure":
            match = _AZURE_ENTRY.match(url)
            if match is None:
                raise malformed(f"entry {number} is not an azure://ACCOUNT.blob.core.windows.net/CONTAINER/PATH url")
            out.append(Slice(match["container"], match["path"], where))
            continue
        scheme = _ENTRY_SCHEMES[detail.backend]
        bucket, _, key = url[len(scheme) :].partition("/") if url.startswith(scheme) else ("", "", "")
        if not bucket or not key:
            raise malformed(f"entry {number} is not a {scheme}BUCKET/KEY url")
        # As the official clients do: the key from the entry, the bucket from the file detail.
        out.append(Slice(detail.location.bucket, key, where))
    return out


# -- the three backends ----------------------------------------------------------------------------------
class S3Reader:
    """GetObject with the file's temporary credentials (boto3, as kbcstorage and the PHP client do)."""

    def __init__(self, credentials: dict[str, Any], region: str) -> None:
        import boto3
        from botocore.config import Config

        try:
            keys = {
                "aws_access_key_id": str(credentials["AccessKeyId"]),
                "aws_secret_access_key": str(credentials["SecretAccessKey"]),
                "aws_session_token": str(credentials["SessionToken"]),
            }
        except KeyError as exc:
            raise ProviderTransientError(f"Keboola file credentials lack {exc.args[0]}") from None
        # A fresh session: these are Keboola's credentials, not the function's. The endpoint comes from the
        # standard configuration (AWS_ENDPOINT_URL_S3 where one is set). Retries: boto3's standard ones
        # for a dropped connection or a 5xx; refusals come back at once to be answered with a refresh.
        self._s3 = boto3.session.Session(region_name=region, **keys).client(
            "s3",
            config=Config(
                signature_version="s3v4",
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=10,
                read_timeout=60,
            ),
        )

    def head(self, obj: Slice) -> bytes:
        body = self._get(obj, Range="bytes=0-1")
        try:
            return body.read(2)
        finally:
            body.close()

    def chunks(self, obj: Slice) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        body = self._get(obj)
        try:
            yield from body.iter_chunks(CHUNK_BYTES)
        except BotoCoreError as exc:  # the connection broke mid-body (ResponseStreamingError, ReadTimeout)
            raise ProviderTransientError(f"S3 GetObject of {obj.where} broke off: {type(exc).__name__}") from exc
        finally:
            body.close()

    def _get(self, obj: Slice, **extra: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._s3.get_object(Bucket=obj.bucket, Key=obj.key, **extra)["Body"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            summary = f"S3 answered {status} {code} for {obj.where}"
            if code in _S3_MISSING or status == 404:
                raise ObjectMissing(summary) from None
            if code in _S3_REFUSALS or status in (401, 403):
                raise ObjectRefused(summary) from None
            raise ProviderTransientError(summary) from None
        except BotoCoreError as exc:  # unreachable, timed out
            raise ProviderTransientError(f"S3 unreachable for {obj.where}: {type(exc).__name__}") from exc


class BlobReader:
    """Azure Blob GETs with the SAS of the connection string (``BlobEndpoint=...;SharedAccessSignature=...``,
    as Azure documents a SAS connection string: ``;``-separated ``name=value`` pairs)."""

    def __init__(self, http: ProviderHttp, credentials: dict[str, Any]) -> None:
        self._http = http
        settings = parse_connection_string(str(credentials.get("SASConnectionString") or ""))
        endpoint, sas = settings.get("BlobEndpoint", ""), settings.get("SharedAccessSignature", "")
        if not endpoint or not sas:
            raise ProviderTransientError("Keboola's SASConnectionString has no BlobEndpoint or SharedAccessSignature")
        self._endpoint, self._sas = endpoint.rstrip("/"), sas.lstrip("?")

    def _url(self, obj: Slice) -> str:
        return f"{self._endpoint}/{quote(obj.bucket, safe='')}/{quote(obj.key, safe='/')}?{self._sas}"

    def head(self, obj: Slice) -> bytes:
        return self._http.object_head(self._url(obj), {"x-ms-version": AZURE_VERSION}, what=f"Blob {obj.where}")

    def chunks(self, obj: Slice) -> Iterator[bytes]:
        what = f"Blob {obj.where}"
        response = self._http.open_object(self._url(obj), {"x-ms-version": AZURE_VERSION}, what=what)
        yield from self._http.stream(response, what=what, chunk_bytes=CHUNK_BYTES)


def parse_connection_string(value: str) -> dict[str, str]:
    """``Name=value;Name2=value2`` -> dict; a value keeps every ``=`` after the first (a SAS is a query string)."""
    pairs = (part.split("=", 1) for part in value.split(";") if "=" in part)
    return {name.strip(): setting.strip() for name, setting in pairs}


class GcsReader:
    """The GCS JSON API media download, ``GET {endpoint}/storage/v1/b/{bucket}/o/{object}?alt=media`` with
    ``Authorization: Bearer <access_token>``."""

    def __init__(self, http: ProviderHttp, credentials: dict[str, Any]) -> None:
        self._http = http
        token = credentials.get("access_token")
        if not isinstance(token, str) or not token:
            raise ProviderTransientError("Keboola's gcsCredentials have no access_token")
        self._headers = {"Authorization": f"Bearer {token}"}
        # Google's clients send everything to STORAGE_EMULATOR_HOST when it is set (an emulator).
        endpoint = os.environ.get("STORAGE_EMULATOR_HOST") or GCS_ENDPOINT
        self._endpoint = (endpoint if "://" in endpoint else "http://" + endpoint).rstrip("/")

    def _url(self, obj: Slice) -> str:
        return f"{self._endpoint}/storage/v1/b/{quote(obj.bucket, safe='')}/o/{quote(obj.key, safe='')}?alt=media"

    def head(self, obj: Slice) -> bytes:
        return self._http.object_head(self._url(obj), self._headers, what=f"GCS {obj.where}")

    def chunks(self, obj: Slice) -> Iterator[bytes]:
        what = f"GCS {obj.where}"
        response = self._http.open_object(self._url(obj), self._headers, what=what)
        yield from self._http.stream(response, what=what, chunk_bytes=CHUNK_BYTES)


# -- the download ----------------------------------------------------------------------------------------
class FileDownload:
    """One Keboola file as one stream: ``open()`` reads the detail, the manifest and the first bytes (so the
    format is known before anything is written); ``chunks()`` streams the header (if any) and every slice.

    ``fetch_detail`` asks Keboola for the file detail (with federation credentials) and is called again
    whenever storage refuses the credentials or the manifest URL; ``columns`` is the header of a table
    export (None: the file is written as it is)."""

    def __init__(
        self,
        fetch_detail: Callable[[], FileDetail],
        http: ProviderHttp,
        *,
        columns: list[str] | None,
        attempts: int = CREDENTIAL_ATTEMPTS,
    ) -> None:
        self._fetch_detail = fetch_detail
        self._http = http
        self._columns = columns
        self._attempts = max(1, attempts)
        self._detail: FileDetail | None = None
        self._objects: list[Slice] = []
        self.gzip = False
        self.detail_fetches = 0

    @property
    def detail(self) -> FileDetail:
        if self._detail is None:
            self._refresh()
        assert self._detail is not None
        return self._detail

    def open(self) -> FileDownload:
        detail = self.detail
        self._objects = self._read_manifest(detail) if detail.sliced else [detail.location]
        self.gzip = self._first_bytes_are_gzip()
        return self

    def chunks(self) -> Iterator[bytes]:
        if self._columns is not None:
            header = header_row(self._columns)
            yield gzip.compress(header, mtime=0) if self.gzip else header
        for obj in self._objects:
            yield from self._object_chunks(obj)

    # -- internals -------------------------------------------------------------------------------------
    def _refresh(self) -> FileDetail:
        self._detail = self._fetch_detail()
        self.detail_fetches += 1
        return self._detail

    def _read_manifest(self, detail: FileDetail) -> list[Slice]:
        if detail.backend == "azure":
            manifest = Slice(detail.location.bucket, detail.location.key + "manifest", "the manifest")
            raw = b"".join(self._with_credentials(manifest, lambda reader, obj: reader.chunks(obj)))
        else:
            urls = iter([detail.url])  # the detail's signed URL first; a fresh detail's once it has expired
            what = f"Keboola file {detail.file_id} manifest"
            response = self._http.open_signed(
                lambda: next(urls, None) or self._refresh().url, what=what, attempts=self._attempts
            )
            raw = b"".join(self._http.stream(response, what=what, chunk_bytes=CHUNK_BYTES))
        return slices_from_manifest(raw, detail)

    def _first_bytes_are_gzip(self) -> bool:
        for obj in self._objects:
            head = b"".join(self._with_credentials(obj, lambda reader, o: iter([reader.head(o)])))
            if head:
                return is_gzip(head)
        return False  # nothing but empty objects: the header alone, as text

    def _object_chunks(self, obj: Slice) -> Iterator[bytes]:
        first = True
        for chunk in self._with_credentials(obj, lambda reader, o: reader.chunks(o)):
            if first and chunk:
                if is_gzip(chunk) != self.gzip:
                    raise ProviderRejectedError(
                        f"Keboola file {self.detail.file_id}: {obj.where} is "
                        f"{'gzip' if is_gzip(chunk) else 'not gzip'}, unlike the first",
                        code="mixed_compression",
                    )
                first = False
            yield chunk

    def _with_credentials(self, obj: Slice, read: Callable[[ObjectReader, Slice], Iterator[bytes]]) -> Iterator[bytes]:
        """The object's bytes; when storage refuses the credentials before the first byte (they expired
        mid-way), a fresh file detail brings new ones and the same object is asked for again, so nothing
        is written twice. Refused ``attempts`` times in a row: ``credentials_refused``."""
        refused = ""
        for attempt in range(self._attempts):
            reader = (self._refresh() if attempt else self.detail).reader
            try:
                yield from read(reader, obj)
                return
            except ObjectRefused as exc:
                refused = exc.message
            except ObjectMissing as exc:
                code = "slice_missing" if obj.where.startswith("slice") else "file_missing"
                raise ProviderRejectedError(
                    f"Keboola file {self.detail.file_id}: {obj.where} is missing ({exc.message})", code=code
                ) from None
        raise ProviderAuthError(
            f"Keboola file {self.detail.file_id}: storage refused the credentials for {obj.where} "
            f"{self._attempts} times in a row, fresh ones included ({refused})",
            code="credentials_refused",
        )
