"""template.yaml as CloudFormation receives it: the SAM translator's output, offline.

The roles CloudFormation creates (policy templates expanded, the managed policies SAM attaches), the
API's stages and deployments exist only in this rendered form, so checks of what AWS will really do
(IAM, stages) read it rather than template.yaml. Needs the dev dependency aws-sam-translator.
"""

from __future__ import annotations

import copy
from typing import Any

REGION = "us-east-1"


def as_packaged(template: dict[str, Any]) -> dict[str, Any]:
    """What `sam package` hands to the transform: local CodeUri/ContentUri/DefinitionUri become S3 URIs."""
    packaged = copy.deepcopy(template)
    sections = [res.get("Properties", {}) for res in packaged.get("Resources", {}).values()]
    sections += list(packaged.get("Globals", {}).values())
    for props in sections:
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                props[key] = f"s3://jobtracker-artifacts/{value.strip('/').replace('/', '-')}"
    return packaged


def render(template: dict[str, Any]) -> dict[str, Any]:
    """The SAM transform of `template` (as loaded by jobtracker.local.template.load_template).

    No AWS call: SAM's bundled managed-policy map resolves AWS managed policy names, and the boto3
    session only tells the translator its region and partition.
    """
    import boto3
    from samtranslator.public.parser import Parser
    from samtranslator.public.translator import ManagedPolicyLoader, Translator

    class OfflinePolicyLoader(ManagedPolicyLoader):
        def __init__(self) -> None:  # no IAM client: nothing is listed from an account
            pass

        def load(self) -> dict[str, str]:
            return {}

    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    return translator.translate(
        as_packaged(template), parameter_values={}, get_managed_policy_map=OfflinePolicyLoader().load
    )
