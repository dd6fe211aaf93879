#!/usr/bin/env python3
"""Creates a bucket on an S3 server unless it exists, with a SigV4-signed PUT (Python's
standard library only, so the test scripts need no AWS SDK):
    s3_create_bucket.py http://127.0.0.1:5999 BUCKET ACCESS_KEY SECRET_KEY
A server still starting (503) is asked again for up to 30 s."""

import datetime
import hashlib
import hmac
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

REGION = "us-east-1"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_put(endpoint: str, bucket: str, access_key: str, secret_key: str) -> urllib.request.Request:
    host = urllib.parse.urlsplit(endpoint).netloc
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    signed_headers = ";".join(sorted(headers))
    canonical = "\n".join(
        ["PUT", f"/{bucket}", ""]
        + [f"{name}:{headers[name]}" for name in sorted(headers)]
        + ["", signed_headers, EMPTY_SHA256]
    )
    scope = f"{day}/{REGION}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret_key}".encode(), day), REGION), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
    )
    del headers["host"]
    return urllib.request.Request(f"{endpoint}/{bucket}", method="PUT", headers=headers)


def main() -> int:
    endpoint, bucket, access_key, secret_key = sys.argv[1:5]
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(signed_put(endpoint, bucket, access_key, secret_key), timeout=10)
            return 0
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")
            if e.code == 409 and "BucketAlready" in body:
                return 0
            if e.code != 503 or time.monotonic() > deadline:
                print(f"creating the bucket {bucket} on {endpoint} failed: HTTP {e.code}: {body}", file=sys.stderr)
                return 1
        except (urllib.error.URLError, ConnectionError) as e:
            if time.monotonic() > deadline:
                print(f"creating the bucket {bucket} on {endpoint} failed: {e}", file=sys.stderr)
                return 1
        time.sleep(0.2)


if __name__ == "__main__":
    sys.exit(main())
