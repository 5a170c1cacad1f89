"""S3Backend specifics: credentials stay secret, error mapping, prefixes."""

from __future__ import annotations

import logging
import traceback

import botocore.exceptions as bexc
import pytest

from mosaic.backends import NotFound, PermanentError, QuotaExceeded, TransientError
from mosaic.backends.s3 import S3Backend

from . import _servers
from .conftest import REGION, S3Env

WRONG_SECRET = "wr0ngSecretKey/DoNotLeak+1234567890abcdef"
TOKEN = "FwoGZXIvYXdzEJr//////////wEaDDoNotLeakThisSessionToken"


def full_text(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


async def test_valid_credentials_work_on_a_checking_server(s3_auth_env: S3Env) -> None:
    async with S3Backend(
        "auth", s3_auth_env.bucket, endpoint=s3_auth_env.endpoint, region=REGION,
        access_key=s3_auth_env.access_key, secret_key=s3_auth_env.secret_key,
    ) as b:
        await b.put("obj", b"signed")
        assert await b.get("obj", 1, 3) == b"ign"
        assert (await b.stat("obj")).size == 6


async def test_wrong_secret_is_permanent_and_never_shown(
    s3_auth_env: S3Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # botocore logs headers and signing at DEBUG
    async with S3Backend(
        "auth", s3_auth_env.bucket, endpoint=s3_auth_env.endpoint, region=REGION,
        access_key=s3_auth_env.access_key, secret_key=WRONG_SECRET, session_token=TOKEN,
    ) as b:
        for call in (b.put("x", b"1"), b.get("x"), b.list()):
            with pytest.raises(PermanentError) as info:
                await call
            text = full_text(info.value)
            assert WRONG_SECRET not in text and TOKEN not in text
            assert "s3://" in str(info.value)
    assert caplog.records, "expected botocore debug logs"
    assert WRONG_SECRET not in caplog.text
    assert TOKEN not in caplog.text


async def test_missing_bucket_is_permanent(s3_env: S3Env) -> None:
    async with S3Backend(
        "nobucket", "no-such-bucket-here", endpoint=s3_env.endpoint, region=REGION,
        access_key=s3_env.access_key, secret_key=s3_env.secret_key,
    ) as b:
        with pytest.raises(PermanentError, match="NoSuchBucket"):
            await b.put("x", b"1")
        with pytest.raises(PermanentError, match="NoSuchBucket"):
            await b.list()


async def test_unreachable_endpoint_is_transient() -> None:
    async with S3Backend(
        "down", "b", endpoint=_servers.closed_port_url(), region=REGION,
        access_key="k" * 16, secret_key="s" * 32,
    ) as b:
        with pytest.raises(TransientError):
            await b.get("x")


@pytest.mark.parametrize(
    ("status", "code", "exc"),
    [(503, "SlowDown", TransientError), (500, "InternalError", TransientError),
     (403, "AccessDenied", PermanentError), (507, "InsufficientStorage", QuotaExceeded)],
)
async def test_http_errors_from_a_real_socket(status: int, code: str, exc: type[Exception]) -> None:
    body = f"<Error><Code>{code}</Code><Message>nope</Message></Error>".encode()
    with _servers.canned_http_server(status, body, {"Content-Type": "application/xml"}) as url:
        async with S3Backend("canned", "b", endpoint=url, region=REGION,
                             access_key="k" * 16, secret_key="s" * 32) as b:
            with pytest.raises(exc, match=code):
                await b.put("x", b"1")
    assert len(url.requests) == 1, "botocore must not retry: RetryingBackend does"


def _client_error(code: str, status: int) -> bexc.ClientError:
    return bexc.ClientError(
        {"Error": {"Code": code, "Message": f"msg {WRONG_SECRET}"},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(
    ("code", "status", "exc"),
    [
        ("NoSuchKey", 404, NotFound),
        ("404", 404, NotFound),
        ("NoSuchBucket", 404, PermanentError),
        ("AccessDenied", 403, PermanentError),
        ("InvalidAccessKeyId", 403, PermanentError),
        ("SignatureDoesNotMatch", 403, PermanentError),
        ("SlowDown", 503, TransientError),
        ("ServiceUnavailable", 503, TransientError),
        ("Throttling", 400, TransientError),
        ("RequestTimeout", 400, TransientError),
        ("InternalError", 500, TransientError),
        ("WeirdNewError", 502, TransientError),
        ("WeirdNewError", 400, PermanentError),
        ("QuotaExceeded", 403, QuotaExceeded),
        ("EntityTooLarge", 400, QuotaExceeded),
    ],
)
def test_client_error_mapping(code: str, status: int, exc: type[Exception]) -> None:
    b = S3Backend("m", "bkt", secret_key=WRONG_SECRET)
    err = b._map(_client_error(code, status), "get", "k")
    assert type(err) is exc
    assert WRONG_SECRET not in str(err)
    assert "s3://bkt/k" in str(err) and code in str(err)


@pytest.mark.parametrize(
    ("boto_exc", "exc"),
    [
        (bexc.EndpointConnectionError(endpoint_url="http://x"), TransientError),
        (bexc.ConnectTimeoutError(endpoint_url="http://x"), TransientError),
        (bexc.ReadTimeoutError(endpoint_url="http://x"), TransientError),
        (bexc.ConnectionClosedError(endpoint_url="http://x"), TransientError),
        (bexc.NoCredentialsError(), PermanentError),
        (bexc.ParamValidationError(report="bad"), PermanentError),
        (ConnectionResetError(104, "reset"), TransientError),
    ],
)
def test_library_error_mapping(boto_exc: Exception, exc: type[Exception]) -> None:
    b = S3Backend("m", "bkt")
    assert type(b._map(boto_exc, "put", "k")) is exc


async def test_prefix_is_a_folder_in_the_bucket(s3_env: S3Env) -> None:
    async with S3Backend(
        "pfx", s3_env.bucket, endpoint=s3_env.endpoint, region=REGION, prefix="/deep/er/",
        access_key=s3_env.access_key, secret_key=s3_env.secret_key,
    ) as b:
        await b.put("packs/ab/x", b"1")
        keys = [o["Key"] for o in s3_env.client().list_objects_v2(
            Bucket=s3_env.bucket, Prefix="deep/")["Contents"]]
        assert keys == ["deep/er/packs/ab/x"]
        assert [o.name for o in await b.list("packs/")] == ["packs/ab/x"]
        await b.delete("packs/ab/x")


def test_repr_has_no_credentials() -> None:
    b = S3Backend("r", "bkt", access_key="AKIAEXAMPLEKEY", secret_key=WRONG_SECRET)
    assert WRONG_SECRET not in repr(b) and "AKIAEXAMPLEKEY" not in repr(b)
