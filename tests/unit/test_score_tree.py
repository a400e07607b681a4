"""The embedded engine's scoring layout, without the model: which tokens a round decodes, and in which cells."""

from __future__ import annotations

import random

import pytest

from xplain.llm.backends import llamacpp_engine
from xplain.llm.backends.llamacpp_engine import _ScorePlan, _ScoreTree, cell_alignment


@pytest.fixture(autouse=True)
def one_round_for_all(monkeypatch):
    """Trees here hold every continuation given; how a round is cut by its cell budget is tested on its own."""
    monkeypatch.setattr(llamacpp_engine, "SCORE_ROUND_CELLS", 1_000_000)


def plan(*sequences: list[int]) -> _ScorePlan:
    """Continuations whose last decoded position is read (one-token labels)."""
    return _ScorePlan(
        sequences=[list(s) for s in sequences],
        reads=[{len(s) - 1: 0} for s in sequences],
        token_counts=[1] * len(sequences),
        prompt_tokens=max(len(s) for s in sequences),
    )


def tree_of(plans: list[_ScorePlan], align: int = 8) -> _ScoreTree:
    tree = _ScoreTree(n_ctx=100_000, max_sequences=10_000, align=align)
    for i, p in enumerate(plans):
        for j in range(len(p.sequences)):
            assert tree.add(i, j, p, first=not (i or j))
    return tree


def paths(tree: _ScoreTree, layout) -> dict[int, list[tuple[int, int, int]]]:
    """Per continuation: (cell, position, token) of every token decoded on its sequence."""
    out: dict[int, list] = {}
    for cell, entry in enumerate(layout):
        if entry is not None:
            token, pos, conts, _ = entry
            for k in conts:
                out.setdefault(k, []).append((cell, pos, token))
    return out


def test_every_continuation_sees_its_own_tokens_each_in_a_cell_aligned_with_its_position():
    """Random perturbations of one text behind one template: each continuation's cells hold exactly its tokens,
    in order, each at a cell congruent to its position modulo the alignment, and positions of one aligned group of
    cells share a group (as when the request is alone on an empty cache)."""
    rng = random.Random(0)
    template, text = list(range(100, 125)), list(range(200, 260))
    plans = []
    for _ in range(40):
        kept = [t for t in text if rng.random() < 0.8]
        plans.append(plan(template + kept + [7, 8, 9], template + kept + [7, 8, 9]))  # two one-token labels
    tree = tree_of(plans)
    layout = tree.layout()
    seen = paths(tree, layout)
    k = 0
    for p in plans:
        for sequence in p.sequences:
            cells = seen[k]
            assert [token for _, _, token in cells] == sequence
            assert [pos for _, pos, _ in cells] == list(range(len(sequence)))
            # one shift, a multiple of 8, for all the positions of an aligned group
            shifts = {(pos // 8, cell - pos) for cell, pos, _ in cells}
            assert len(shifts) == len({pos // 8 for _, pos, _ in cells})
            assert all(shift % 8 == 0 for _, shift in shifts)
            assert [c for c, _, _ in cells] == sorted(c for c, _, _ in cells)
            k += 1


def test_shared_prefixes_are_decoded_once_in_whole_blocks():
    """Ten texts that part after 40 shared tokens: the first five blocks are decoded once, each text's rest once
    (its two labels share it), plus the block it parts in again for all but the first."""
    shared = list(range(40))
    plans = [plan(shared + [1000 + n] * 12, shared + [1000 + n] * 12) for n in range(10)]
    tree = tree_of(plans)
    assert tree.tokens == 40 + 10 * 12
    layout = tree.layout()
    assert sum(entry is not None for entry in layout) == tree.tokens
    # each text's 12 tokens end inside a block: fillers up to the next block for all but the last
    assert sum(entry is None for entry in layout) == 9 * (-52 % 8)


def test_a_text_parting_inside_a_block_decodes_that_blocks_head_again():
    tree = tree_of([plan([1, 2, 3, 4, 5], [1, 2, 3, 9, 9])], align=8)
    assert tree.tokens == 5 + 5  # the second path re-decodes 1, 2, 3 in a block of its own
    tree = tree_of([plan([1, 2, 3, 4, 5, 6, 7, 8, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9])], align=8)
    assert tree.tokens == 8 + 1 + 1  # parting at a block boundary costs nothing again


def test_flat_scoring_shares_only_the_given_depth():
    shared = list(range(16))
    plans = [plan(shared + [50, 51, n]) for n in range(4)]
    tree = _ScoreTree(n_ctx=10_000, max_sequences=100, align=8)
    for i, p in enumerate(plans):
        tree.add(i, 0, p, own=(i, 16), first=not i)
    assert tree.tokens == 16 + 4 * 3


def test_a_round_stops_at_its_sequences_and_cells(monkeypatch):
    monkeypatch.setattr(llamacpp_engine, "SCORE_ROUND_CELLS", 24)
    tree = _ScoreTree(n_ctx=64, max_sequences=2, align=8)
    p = plan([1] * 10, [1] * 10, [1] * 10)
    assert tree.add(0, 0, p, first=True) and tree.add(0, 1, p, first=False)
    assert not tree.add(0, 2, p, first=False)
    small = _ScoreTree(n_ctx=16, max_sequences=10, align=8)
    assert small.add(0, 0, plan([1] * 12), first=True)
    assert not small.add(1, 0, plan([2] * 12), first=False)
    # past the budget, a continuation joins only when it mostly rides on what is there (a long prompt's labels)
    budget = _ScoreTree(n_ctx=1000, max_sequences=10, align=8)
    long = plan([3] * 30 + [4], [3] * 30 + [5])
    assert budget.add(0, 0, long, first=True) and budget.add(0, 1, long, first=False)
    assert not budget.add(1, 0, plan([6] * 20), first=False)


@pytest.mark.parametrize(
    ("info", "align"),
    [
        ("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | LLAMAFILE = 1 | OPENMP = 1 |", 8),
        ("CPU : AVX2 = 1 | AVX512 = 1 | LLAMAFILE = 1 |", 16),
        ("CPU : AVX2 = 1 | OPENMP = 1 |", 32),
        ("CPU : NEON = 1 | ARM_FMA = 1 | LLAMAFILE = 1 |", 64),
    ],
)
def test_cell_alignment_follows_the_builds_simd_width(info, align):
    assert cell_alignment(info) == align


def test_a_rounds_lead_is_what_every_continuation_shares_in_its_first_cells_up_to_a_branch_or_a_read():
    """The lead stays in the cache for the next round: so it must sit in cells 0, 1, ... (no filler before it),
    be on every continuation's sequence, and no logits may be read there (a kept cell is not decoded again)."""
    template = list(range(100, 121))  # 21 tokens: two full blocks of 8, then 5 shared tokens of the third
    tree = tree_of([plan(template + [1, 2], template + [1, 3]), plan(template + [4, 5, 6])])
    lead = tree.lead()
    assert lead == template[:16]  # the paths part inside the third block, which each then decodes on its own
    layout = tree.layout()
    assert [entry[0] for entry in layout[: len(lead)]] == lead
    assert all(entry[1] == cell and len(entry[2]) == 3 for cell, entry in enumerate(layout[: len(lead)]))
    two_roots = tree_of([plan(template + [1]), plan([9, *template])])
    assert two_roots.lead() == []
    read_early = _ScorePlan(
        sequences=[template + [1, 2]], reads=[{3: 7, 22: 8}], token_counts=[2], prompt_tokens=4
    )  # a continuation whose context ends at position 3
    assert tree_of([read_early, plan(template + [4])]).lead() == template[:3]
    one_path = tree_of([plan(template + [1, 2], template + [1, 2])])
    assert one_path.lead() == template + [1]  # up to the position whose logits are read
