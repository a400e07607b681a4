"""Names, paths, URL-model hosts and validation messages: the checks every front shares."""

from __future__ import annotations

import os

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from xplain.blackbox.loaders import HostPolicy, ModelHostRefused
from xplain.errors import Forbidden, InvalidInput, describe_validation_error
from xplain.validation import check_slug, resolve_under


@pytest.mark.parametrize("name", ["reviews", "my-model_2", "v1.2", "A", "x" * 100, "-dash"])
def test_slugs_that_pass(name):
    assert check_slug(name) == name


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "a\\b", "", "x" * 101, "naïve", "a b", "a\n", "a\x00"])
def test_slugs_that_are_refused(name):
    with pytest.raises(InvalidInput, match="not starting with a dot"):
        check_slug(name, "model name")


def test_paths_stay_under_their_root(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path / "secret", root / "link")
    assert resolve_under(root, "sub/file.csv") == (root / "sub" / "file.csv").resolve()
    for bad in ("../secret", "/etc/passwd", "link", "sub/../../secret", ".", ""):
        with pytest.raises(Forbidden, match="outside the data directory") as refused:
            resolve_under(root, bad, "the data directory")
        assert str(tmp_path) not in str(refused.value)  # the server's own paths are not told


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label_names: list[str] = []
    top_k: int = 3


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    options: Inner = Inner()
    batches: list[Inner] = []


def test_unknown_keys_name_the_allowed_ones_at_their_level():
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"model": "m", "options": {"labelnames": ["a"]}, "batches": [{"topk": 1}], "x": 1})
    problems = describe_validation_error(caught.value, Outer)
    assert {"where": "options.labelnames", "problem": "unknown key 'labelnames'; allowed keys: label_names, top_k"} in problems
    assert {"where": "batches.0.topk", "problem": "unknown key 'topk'; allowed keys: label_names, top_k"} in problems
    assert {"where": "x", "problem": "unknown key 'x'; allowed keys: batches, model, options"} in problems


def test_messages_carry_no_urls_and_the_model_is_found_by_its_name():
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"options": {"top_k": "many", "extra": 1}})
    problems = describe_validation_error(caught.value)  # no model given: found from the error's title
    text = str(problems)
    assert "http" not in text and "pydantic" not in text
    assert {"where": "model", "problem": "Field required"} in problems
    assert any(p["where"] == "options.top_k" and "integer" in p["problem"] for p in problems)
    assert any("allowed keys: label_names, top_k" in p["problem"] for p in problems)


class Policy:
    """HostPolicy with DNS answered from a table, so the rules are tested without a resolver."""

    def __init__(self, monkeypatch, answers: dict[str, list[str]]):
        monkeypatch.setattr("xplain.blackbox.loaders._resolve", lambda host, port: answers[host])


@pytest.mark.parametrize(
    ("allowed", "url", "answers", "refusal"),
    [
        ([], "http://models.example/", {"models.example": ["93.184.216.34"]}, "are off"),
        (["models.example"], "http://models.example/", {"models.example": ["93.184.216.34"]}, None),
        (["models.example"], "http://other.example/", {"other.example": ["93.184.216.34"]}, "not in"),
        (["models.example"], "http://models.example/", {"models.example": ["10.1.2.3"]}, "private"),
        (["models.example"], "http://models.example/", {"models.example": ["169.254.169.254"]}, "metadata"),
        (["models.example"], "http://models.example/", {"models.example": ["93.184.216.34", "127.0.0.1"]}, "loopback"),
        (["models.example"], "http://models.example/", {"models.example": ["::ffff:127.0.0.1"]}, "loopback"),
        (["models.example", "10.0.0.0/8"], "http://models.example/", {"models.example": ["10.1.2.3"]}, None),
        (["10.0.0.0/8"], "http://10.9.9.9:8000/", {"10.9.9.9": ["10.9.9.9"]}, None),
        (["10.0.0.0/8"], "http://inside.example/", {"inside.example": ["10.0.0.5", "11.0.0.1"]}, "not in"),
        (["10.0.0.0/8"], "ftp://10.9.9.9/", {}, "http:// or https://"),
        (["fd00::/8"], "http://[fd00::1]/", {"fd00::1": ["fd00::1"]}, None),
    ],
)
def test_host_policy(monkeypatch, allowed, url, answers, refusal):
    Policy(monkeypatch, answers)
    policy = HostPolicy(allowed)
    if refusal is None:
        assert policy.check(url)
    else:
        with pytest.raises(ModelHostRefused, match=refusal):
            policy.check(url)
