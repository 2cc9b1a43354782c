"""The backup target's rules (stacks.data): every fix they name for a target at a hosted S3 service, written back into
the stack as the message says it, validates. A fix that is itself refused would send the user round a second time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stacks import StackConfigError, load_stack_file
from tests.edit import edit, homelab_doc, write_stack

# Where the service's region cannot be read from what was written, the fix leaves `<region>` for the user, who reads it
# from the provider (B2's bucket page names its Endpoint); the test fills it with one of the provider's, as the user would,
# and a bucket or an account the URL does not carry likewise.
_FILLED = {"<bucket>": "mybucket", "<account id>": "0123456789abcdef0123456789abcdef"}
_REGIONS = {"backblazeb2.com": "us-west-004", "scw.cloud": "fr-par"}

# Targets copied from a provider's web console, a download URL, or written with the endpoint's http(s) scheme or port,
# each with the backup.region beside it (None: the default).
TARGETS: list[tuple[str, str | None]] = [
    ("https://s3.console.aws.amazon.com/s3/buckets/mybucket", None),
    ("https://s3.console.aws.amazon.com/s3/buckets/mybucket?region=eu-west-1&bucketType=general&tab=objects", None),
    ("https://s3.console.aws.amazon.com/s3/buckets/mybucket?region=eu-west-1", "eu-west-1"),
    ("https://eu-west-2.console.aws.amazon.com/s3/buckets/mybucket", None),
    ("https://s3.console.aws.amazon.com/s3/object/mybucket?region=us-west-2&prefix=lab/", None),
    ("https://s3.console.aws.amazon.com/s3/home", "eu-central-1"),
    ("https://console.aws.amazon.com/s3/buckets/mybucket", "auto"),
    ("s3://s3.console.aws.amazon.com/s3/buckets/mybucket", None),
    ("s3://s3.console.aws.amazon.com/homelab", "eu-west-1"),
    ("https://f003.backblazeb2.com/file/mybucket/x", None),
    ("https://f003.backblazeb2.com/file/mybucket/x", "eu-central-003"),
    ("s3://f003.backblazeb2.com/file/mybucket/x", None),
    ("s3+http://f003.backblazeb2.com/file/mybucket/x", None),
    ("https://api.backblazeb2.com/b2api/v2", None),
    ("s3://api.backblazeb2.com/homelab", "eu-central-003"),
    ("s3://s3.backblazeb2.com/homelab", None),
    ("https://secure.backblaze.com/b2_buckets.htm", None),
    ("https://dash.cloudflare.com/0123456789abcdef0123456789abcdef/r2/default/buckets/mybucket", None),
    ("https://dash.cloudflare.com/0123456789abcdef0123456789abcdef/r2/default/buckets/mybucket", "eu-west-1"),
    ("https://dash.cloudflare.com/0123456789abcdef0123456789abcdef/r2/eu/buckets/mybucket", None),
    ("https://dash.cloudflare.com/", None),
    ("https://console.scaleway.com/object-storage/buckets/fr-par/mybucket", None),
    ("https://console.scaleway.com/object-storage/buckets/fr-par/mybucket", "nl-ams"),
    ("https://console.wasabisys.com/file_manager/mybucket", None),
    ("s3://console.wasabisys.com/homelab", "eu-central-1"),
    ("s3://console.wasabisys.com/homelab", "auto"),
    ("https://console.wasabisys.com/file_manager/mybucket", "eu-central"),
    ("https://s3.us-east-1.amazonaws.com:8443/mybucket", None),
    ("s3+http://s3.us-east-1.amazonaws.com:80/homelab", None),
    ("https://s3.eu-central-003.backblazeb2.com:9000/homelab", "eu-central-003"),
    ("https://s3.us-east-1.amazonaws.com/mybucket", None),
    ("http://s3.us-east-1.amazonaws.com/mybucket", None),
    ("http://mybucket.s3.us-east-1.amazonaws.com/lab", None),
    ("https://mybucket.s3.eu-central-003.backblazeb2.com/lab", "eu-central-003"),
    ("http://nyc3.digitaloceanspaces.com/mybucket", None),
    ("s3://mybucket.s3.us-west-004.backblazeb2.com/lab", "us-west-004"),
    ("s3+http://mybucket.s3.amazonaws.com", None),
]

_WRITE = re.compile(r"(?:write|e\.g\.) (s3(?:\+http)?://(?:<[^>]*>|[^\s,<])+)")
_REGION = re.compile(r"set backup\.region: (\S+)$")


def _fill(text: str, target: str) -> str:
    for placeholder, value in _FILLED.items():
        text = text.replace(placeholder, value)
    region = next((r for domain, r in _REGIONS.items() if domain in target), "us-east-1")
    return text.replace("<region>", region)


@pytest.mark.parametrize(("target", "region"), TARGETS, ids=[f"{t} region={r}" for t, r in TARGETS])
def test_every_fix_of_a_hosted_target_validates_as_written(target: str, region: str | None, tmp_path: Path) -> None:
    written = {"iluvatar:backup.target": target, **({"iluvatar:backup.region": region} if region else {})}
    with pytest.raises(StackConfigError) as err:
        load_stack_file(write_stack(tmp_path, edit(homelab_doc(), written)), require_secrets=True)
    [problem] = err.value.problems
    assert problem.path == "iluvatar:backup.target"
    fix = _WRITE.search(problem.message)
    assert fix is not None, problem.message
    fixed = {"iluvatar:backup.target": _fill(fix.group(1), fix.group(1)), **({"iluvatar:backup.region": region} if region else {})}
    if (also := _REGION.search(problem.message)) is not None:
        fixed["iluvatar:backup.region"] = also.group(1)
    elif problem.message.endswith("with backup.region set to that region"):
        fixed["iluvatar:backup.region"] = _fill("<region>", fix.group(1))
    load_stack_file(write_stack(tmp_path, edit(homelab_doc(), fixed)), require_secrets=True)
