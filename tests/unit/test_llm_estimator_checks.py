"""scikit-learn's estimator checks, with fake LLMs. LMLDAPClassifier's fake gives unusable labels, so predictions
come from the retrieval fallback (the LLM-independent part the checks can judge). TextBottleneckClassifier takes
text, so it runs the checks that apply to any estimator (the numeric-array checks are skipped by its tags)."""

import json

import pytest
from sklearn.utils import estimator_checks as checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.lml_dap import LMLDAPClassifier
from xplain.methods.tbm import TextBottleneckClassifier
from xplain.settings import Settings

#: The LLM handle counts its usage, so fitting changes its hash although no setting of it changes.
LLM_HANDLE = {"check_estimators_overwrite_params": "the LLM parameter is a service handle whose usage counters grow"}


def lml_llm() -> LLM:
    return LLM(
        FakeBackend(
            rules=[
                (r"List up to", '{"patterns": ["p"]}'),
                (r"Give up to", '{"conditions": [{"feature": "x0", "op": ">", "value": -99}]}'),
                (r"Predict the label", '{"label": "?", "confidence": 0.5, "reasons": ["r"]}'),
            ]
        )
    )


def tbm_llm() -> LLM:
    return LLM(FakeBackend(rules=[(r"Rate how much", json.dumps({"rating": 1})),
                                  (r"Propose up to", json.dumps({"concepts": [{"name": "c", "question": "q?"}]}))]))


@parametrize_with_checks(
    [LMLDAPClassifier(lml_llm(), k=1), TextBottleneckClassifier(tbm_llm(), n_iterations=1)],
    expected_failed_checks=lambda estimator: LLM_HANDLE,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@parametrize_with_checks([LMLDAPClassifier(Settings(llm_backend="fake", cache_enabled=False), k=1)])
def test_sklearn_compatible_with_the_llm_as_settings(estimator, check):
    """Given as settings, the LLM is a plain parameter that fitting never changes: every check passes."""
    check(estimator)


@pytest.mark.parametrize(
    "check",
    [
        checks.check_get_params_invariance,
        checks.check_set_params,
        checks.check_no_attributes_set_in_init,
        checks.check_parameters_default_constructible,
        checks.check_estimator_repr,
        checks.check_do_not_raise_errors_in_init_or_set_params,
    ],
    ids=lambda c: c.__name__,
)
def test_text_estimator_passes_the_checks_that_take_no_numeric_array(check):
    check("TextBottleneckClassifier", TextBottleneckClassifier(tbm_llm(), n_iterations=1))
