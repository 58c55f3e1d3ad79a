import pytest

from jobtracker.local.stack import REPO_ROOT
from jobtracker.local.template import NO_VALUE, Resolver, load_template, substitute_definition


def _resolver(template, **params):
    return Resolver(
        template,
        params,
        {"AWS::Region": "eu-west-1", "AWS::StackName": "s"},
        lambda logical, attr: f"{logical}.{attr or 'Ref'}",
    )


def test_loader_reads_cloudformation_tags():
    template = load_template(REPO_ROOT / "template.yaml")
    bucket_env = template["Globals"]["Function"]["Environment"]["Variables"]["INBOX_BUCKET"]
    assert bucket_env == {"Ref": "InboxBucket"}


def test_resolver_evaluates_the_intrinsics_the_template_uses():
    template = {
        "Parameters": {"Name": {"Type": "String", "Default": ""}},
        "Conditions": {"Empty": {"Fn::Equals": [{"Ref": "Name"}, ""]}},
    }
    r = _resolver(template)
    assert r.resolve({"Fn::Sub": "arn:${AWS::Region}:${Bucket.Arn}:${Name}"}) == "arn:eu-west-1:Bucket.Arn:"
    assert r.resolve({"Fn::If": ["Empty", {"Ref": "Secret"}, "given"]}) == "Secret.Ref"
    assert r.resolve({"Fn::Not": [{"Condition": "Empty"}]}) is False
    assert r.resolve({"Fn::Join": ["-", ["a", {"Ref": "AWS::StackName"}]]}) == "a-s"
    assert r.resolve([{"Ref": "AWS::NoValue"}, 1]) == [1]
    assert r.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE
    assert _resolver(template, Name="x").resolve({"Fn::If": ["Empty", 1, 2]}) == 2


def test_resolver_refuses_what_it_does_not_understand():
    with pytest.raises(NotImplementedError):
        _resolver({}).resolve({"Fn::ImportValue": "x"})
    with pytest.raises(KeyError):
        _resolver({"Parameters": {}}, Unknown="1")


def test_definition_substitution_fails_on_a_missing_placeholder():
    assert substitute_definition('{"a": "${X}"}', {"X": "arn"}) == '{"a": "arn"}'
    with pytest.raises(KeyError, match="Y"):
        substitute_definition('{"a": "${Y}"}', {"X": "arn"})
