"""A failed row says what every front says for its error (`errors.describe`), and whose fault it was: a job retries
backend failures and not bad input, and a bug's details stay in the log, out of results a client reads."""

from __future__ import annotations

import logging

from xplain.batch.runner import describe_error, is_bad_input, outcomes_of
from xplain.blackbox import BlackBoxError
from xplain.errors import InvalidInput, NotFound, describe
from xplain.llm import LLMError


def test_a_bug_in_a_row_shows_the_front_message_and_logs_the_details(caplog):
    with caplog.at_level(logging.ERROR):
        [outcome] = outcomes_of([4], [KeyError("/srv/secret/path")])
    assert not outcome.ok and outcome.error == describe(KeyError("x"))[1]
    assert "/srv/secret" not in outcome.error and "/srv/secret" in caplog.text
    assert not is_bad_input(outcome.error), "a bug may be fixed: the row is run again on resume"


def test_bad_input_is_the_rows_fault_and_backends_are_named():
    assert is_bad_input(describe_error(InvalidInput("the text is empty")))
    assert is_bad_input(describe_error(ValueError("not a number")))
    assert describe_error(LLMError("timed out")).startswith("LLM backend: ")
    assert describe_error(BlackBoxError("the model raised")).startswith("black box: ")
    assert not any(is_bad_input(describe_error(e)) for e in (LLMError("x"), BlackBoxError("x"), NotFound("no model")))
