"""The object-storage settings: ``s3://`` URLs, the endpoint, the region and the backlog bound
are checked at start-up with a message naming the variable."""

import pytest

from config import Settings, SettingsError


def test_recordings_stay_on_local_disk_by_default() -> None:
    assert Settings.from_env({}).s3_location is None


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://recordings", ("recordings", "")),
        ("s3://recordings/", ("recordings", "")),
        ("s3://rec.example-1/live/node-a/", ("rec.example-1", "live/node-a/")),
    ],
)
def test_an_s3_url_names_the_bucket_and_the_key_prefix(url: str, location: object) -> None:
    assert Settings.from_env({"LIVERELAY_STORAGE_URL": url}).s3_location == location


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LIVERELAY_STORAGE_URL", "/var/lib/recordings", "must be s3://bucket"),
        ("LIVERELAY_STORAGE_URL", "https://bucket.example.com", "must be s3://bucket"),
        ("LIVERELAY_STORAGE_URL", "s3://Upper_Case", "is not a bucket name"),
        ("LIVERELAY_STORAGE_URL", "s3://", "is not a bucket name"),
        ("LIVERELAY_STORAGE_URL", "s3://bucket/a/../b", "'..' part"),
        ("LIVERELAY_STORAGE_URL", "s3://bucket/a//b", "empty"),
        ("LIVERELAY_S3_ENDPOINT", "127.0.0.1:8333", "http:// or https://"),
        ("LIVERELAY_S3_ENDPOINT", "http://127.0.0.1:8333/bucket", "scheme://host[:port] only"),
        ("LIVERELAY_S3_REGION", "eu west", "is not a region name"),
        ("LIVERELAY_UPLOAD_BACKLOG_MB", "0", ">= 1"),
        ("LIVERELAY_UPLOAD_BACKLOG_MB", "lots", "is not a valid int"),
    ],
)
def test_malformed_storage_settings_are_refused_by_name(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=variable) as error:
        Settings.from_env({variable: value})
    assert message in str(error.value)
