"""iPrompt on the fake LLM: one score call per round, iteration keeps the best, held-out accuracy, bad input."""

import numpy as np
import pytest

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.methods.iprompt import (
    IPromptOptions,
    PromptCandidate,
    answer_matches,
    explain_dataset,
    keep_best,
    truncate,
)

PAIRS = [(f"{a} {b}", str(a + b)) for a, b in [(1, 2), (3, 4), (2, 2), (5, 1), (0, 7), (6, 2), (4, 4), (3, 5), (1, 1), (2, 6)]]
INPUTS, OUTPUTS = [x for x, _ in PAIRS], [y for _, y in PAIRS]


def answer_sum(request):
    text = request.messages[-1].content
    numbers = text.split("<data>\n")[1].split("\n</data>")[0].split()
    return str(sum(map(int, numbers))) if "Add" in text else "no idea"


def backend():
    return FakeBackend(
        rules=[
            (r"Here is the start", "Add the two numbers"),
            (r"What is the rule", "Say a number"),
            (r"Follow this instruction", answer_sum),
        ],
        token_logprob=lambda prev, tok: 0.0,
    )


async def test_one_score_call_per_round_and_the_best_is_kept():
    fake = backend()
    options = IPromptOptions(n_candidates=3, n_keep=1, n_mutations=2, n_iterations=2, n_score_examples=4, seed=0)
    llm = LLM(fake)

    def loglik(instruction):  # the true outputs are likelier after an instruction that says to add
        return -1.0 if "add" in instruction.lower() else -4.0 if instruction == "Say a number" else -9.0

    original = fake.score

    async def score(requests):
        raws = await original(requests)
        for request, raw in zip(requests, raws):
            instruction = request.prompt.split("Instruction: ")[1].split("\n")[0]
            raw.logprobs = [loglik(instruction)]
        return raws

    fake.score = score
    result = await explain_dataset(llm, INPUTS, OUTPUTS, options)
    # baseline + proposals in one call, then one call per iteration with new candidates
    assert len(fake.score_batches) >= 2
    # "", the one distinct proposal and each near-miss rule's instruction, x 4 examples
    assert len(fake.score_batches[0]) == (1 + 1 + len(result.near_misses)) * 4
    assert "Add the two numbers" in result.best.prompt
    assert result.best.origin == "mutated"
    assert result.best.gain == pytest.approx(-1.0 - -9.0)
    assert result.best.heldout_accuracy == 1.0
    assert [c.loglik for c in result.candidates] == sorted((c.loglik for c in result.candidates), reverse=True)
    zero_shot_batch = fake.batches[-1]
    assert len(zero_shot_batch) == len(result.candidates[:3]) * result.n_heldout


async def test_proposals_go_out_as_one_batch():
    fake = backend()
    await explain_dataset(LLM(fake), INPUTS, OUTPUTS, IPromptOptions(n_candidates=5, n_iterations=0))
    assert len(fake.batches[0]) == 5
    assert all("What is the rule" in r.messages[-1].content for r in fake.batches[0])


def test_keep_best_and_truncate():
    def c(p, s):
        return PromptCandidate(prompt=p, loglik=s, gain=0.0, iteration=0, origin="proposed")
    assert [x.prompt for x in keep_best([c("a", -2), c("b", -1), c("c", -1)], 2)] == ["b", "c"]
    rng = np.random.default_rng(0)
    for _ in range(20):
        cut = truncate("add the two numbers", rng).split()
        assert 1 <= len(cut) < 4 and "add the two numbers".startswith(" ".join(cut))


def test_answer_matches():
    assert answer_matches("Paris.\nbecause", "paris")
    assert answer_matches("Output: 7 is the sum", "7")
    assert not answer_matches("70", "7")
    assert not answer_matches("", "7")


async def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="outputs"):
        await explain_dataset(LLM(FakeBackend()), ["a", "b", "c", "d"], ["1", "2"])
    with pytest.raises(ValueError, match="at least"):
        await explain_dataset(LLM(FakeBackend()), ["a"], ["1"])
    with pytest.raises(ValueError, match="empty"):
        await explain_dataset(LLM(FakeBackend()), ["a", "b", "", "d"], ["1", "2", "3", "4"])




def test_cli_explain_dataset_and_module(fake_llm_env, tmp_path):
    import json

    from typer.testing import CliRunner

    from xplain.cli import app

    runner = CliRunner()
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"input": x, "output": y}) + "\n" for x, y in PAIRS))
    result = runner.invoke(app, ["explain-dataset", str(data), "--iterations", "1", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["candidates"] and found["n_train"] + found["n_heldout"] == len(PAIRS)
    assert found["candidates"][0]["heldout_accuracy"] is not None

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the dog chased a cat\nstocks fell on monday\n")
    result = runner.invoke(app, ["explain-module", "tests.unit.test_sasc:animal_module", "--corpus", str(corpus), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["top_ngrams"][0]["activation"] > 0

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "1 2"}\n')
    result = runner.invoke(app, ["explain-dataset", str(bad)])
    assert result.exit_code == 2 and "input" in result.output


WORDS = ["cat", "dog", "sun", "map", "pen", "cup", "hat", "box", "key", "bee"]


def test_case_is_compared_only_where_the_task_differs_by_case():
    from xplain.methods.iprompt import case_matters

    assert case_matters([(w, w.upper()) for w in WORDS])
    assert case_matters([("good", "Yes"), ("bad", "yes")])  # two outputs that differ only by case
    assert not case_matters(PAIRS)
    assert answer_matches("cat", "CAT") and not answer_matches("cat", "CAT", case_sensitive=True)
    assert answer_matches("Answer: CAT.", "CAT", case_sensitive=True)


def test_a_prompt_that_copies_a_training_pair_is_caught():
    from xplain.methods.iprompt import quoted_example

    train = [("12", "even"), ("7", "odd")]
    assert quoted_example("Answer like 12 -> even", train) == "12 -> even"
    assert quoted_example("say '7': 'odd'", train) == "7 -> odd"
    assert quoted_example("Say even when the number divides by 2, else odd", train) is None
    assert quoted_example("112 -> evens", train) is None  # parts of other words are no quote


async def test_uppercase_rule_is_checked_with_case_and_quoting_prompts_rank_last():
    """Outputs are the inputs in capitals. The LLM answers zero-shot in lower case, which only a case-blind
    comparison would count; a prompt that quotes "cat -> CAT" has the best likelihood yet ranks last."""
    proposals = iter(["Copy the word, e.g. cat -> CAT", "Write the word in capital letters"] * 10)

    def propose(request):
        return next(proposals)

    def echo_lower(request):
        return request.messages[-1].content.split("<data>\n")[1].split("\n</data>")[0].lower()

    fake = FakeBackend(
        rules=[(r"Here is the start", "Write it"), (r"What is the rule", propose), (r"Follow this instruction", echo_lower)]
    )
    original = fake.score

    async def score(requests):
        raws = await original(requests)
        for request, raw in zip(requests, raws):
            raw.logprobs = [-0.5 if "cat -> CAT" in request.prompt else -2.0]
        return raws

    fake.score = score
    pairs = [(w, w.upper()) for w in WORDS]
    result = await explain_dataset(
        LLM(fake), [x for x, _ in pairs], [y for _, y in pairs], IPromptOptions(n_candidates=2, n_iterations=0)
    )
    assert result.case_sensitive
    assert [c.prompt for c in result.candidates] == ["Write the word in capital letters", "Copy the word, e.g. cat -> CAT"]
    assert result.candidates[-1].quotes_example == "cat -> CAT"
    best = result.candidates[0]
    assert best.heldout_accuracy == 0.0  # "cat" is not "CAT" here
    assert best.heldout_check.n == result.n_heldout and best.heldout_check.interval[0] == 0.0


def test_a_heldout_check_that_scores_every_prompt_alike_says_it_cannot_separate():
    from xplain.methods.checks import proportion_check
    from xplain.methods.iprompt import heldout_separates

    assert heldout_separates([proportion_check(0, 12), proportion_check(0, 12)]) is False  # the 135M model's case
    assert heldout_separates([proportion_check(12, 12), proportion_check(0, 12)]) is True
    assert heldout_separates([proportion_check(7, 12), proportion_check(5, 12)]) is False  # intervals overlap
    assert heldout_separates([proportion_check(3, 12)]) is None


PARITY = [(str(n), "even" if n % 2 == 0 else "odd") for n in [2, 4, 6, 8, 10, 12, 14, 16, 3, 18, 20, 22, 24, 5]]


def parity_backend(answer):
    """Proposes `Say even`; answers every zero-shot question with `answer(number)`."""

    def zero_shot(request):
        return answer(int(request.messages[-1].content.split("<data>\n")[1].split("\n</data>")[0]))

    return FakeBackend(
        rules=[(r"Here is the start", "Say even"), (r"What is the rule", "Say even"), (r"Follow this instruction", zero_shot)],
        token_logprob=lambda prev, tok: 0.0,
    )


def test_near_miss_rules_are_the_commonest_output_and_surface_rules_that_fit_something():
    from xplain.methods.iprompt import near_miss_rules

    rules = {name: (prompt, rule) for name, prompt, rule in near_miss_rules(PARITY)}
    assert set(rules) == {"majority"}  # copying or a word of "12" never gives "even"
    assert rules["majority"][0] == 'Answer "even" whatever the input.' and rules["majority"][1]("7") == "even"
    words = [("red car", "red"), ("big dog", "big"), ("a b", "b")]
    # an answer is judged by its first words, so copying the input fits where the output starts it
    assert {n for n, _, _ in near_miss_rules(words)} == {"majority", "copy", "first_word", "last_word"}
    assert {n for n, _, _ in near_miss_rules([("x y", "z"), ("u v", "z"), ("p", "q")])} == {"majority"}


async def test_a_prompt_no_better_than_always_the_commonest_output_is_said_so():
    """Most outputs are "even": a prompt that makes the LLM always say "even" scores as well as the majority rule
    on held-out pairs, so it does not beat it, and the result says so."""
    options = IPromptOptions(n_candidates=1, n_iterations=0, heldout_fraction=0.5, n_heldout=7)
    result = await explain_dataset(
        LLM(parity_backend(lambda n: "even")), [x for x, _ in PARITY], [y for _, y in PARITY], options
    )
    [rule] = result.near_misses
    assert rule.name == "majority" and rule.train_fit > 0.5
    best = result.best
    assert best.heldout_accuracy == rule.heldout_accuracy  # the prompt answers just as the rule does
    assert best.near_miss_check.estimate == 0.0 and best.near_miss_check.verdict != "faithful"
    assert any("does not beat the near-miss rule" in note and "majority" in note for note in result.notes)


async def test_a_prompt_that_reads_the_input_beats_the_near_misses_and_no_note_says_otherwise():
    options = IPromptOptions(n_candidates=1, n_iterations=0, heldout_fraction=0.5, n_heldout=7)
    pairs = [(str(n), "even" if n % 2 == 0 else "odd") for n in range(1, 29)]
    result = await explain_dataset(
        LLM(parity_backend(lambda n: "even" if n % 2 == 0 else "odd")), [x for x, _ in pairs], [y for _, y in pairs], options
    )
    best = result.best
    assert best.heldout_accuracy == 1.0 and result.near_misses[0].heldout_accuracy < 0.75
    assert best.near_miss_check.verdict == "faithful"
    assert not any("near-miss" in note for note in result.notes)
