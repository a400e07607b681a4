"""Which tokens are the continuation's when a prompt and its continuation are tokenized together.

Tokenizing a continuation on its own is not the same as tokenizing it after its prompt: SentencePiece tokenizers
(Llama 2, Mistral) put a word-start piece in front of text that stands alone, and pieces can merge across the
seam ("Answer: " + "yes" is "▁Answer:" "▁yes", not "▁Answer:" "▁" + "▁yes"). So scoring tokenizes prompt +
continuation as one text, the way the model reads it, and counts as the continuation's every token that covers at
least one of its characters; a token that straddles the seam counts with the continuation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def merged_seam_prefixes(prompt_ids: Sequence[int], joint_ids: Sequence[int]) -> list[list[int]]:
    """The id prefixes whose decoded lengths `continuation_start` needs: none when the joint tokenization begins
    with the prompt's own tokens (a clean seam), else the prompt's ids and each joint prefix past the common part."""
    shared = common_prefix(prompt_ids, joint_ids)
    if shared == len(prompt_ids):
        return []
    return [list(prompt_ids)] + [list(joint_ids[: i + 1]) for i in range(shared, len(joint_ids))]


def continuation_start(
    prompt_ids: Sequence[int], joint_ids: Sequence[int], decoded_length: Callable[[list[int]], int]
) -> int:
    """Index in `joint_ids` (prompt + continuation tokenized together) of the continuation's first token.

    Where the joint ids begin with the prompt's ids, those tokens cover exactly the prompt's text. Where the seam
    merged, a token belongs to the continuation once the text decoded up to and including it is longer than the
    prompt's decoded text (lengths of decoded prefixes, so a BOS that decodes as ``<s>`` cancels out).
    """
    prefixes = merged_seam_prefixes(prompt_ids, joint_ids)
    if not prefixes:
        return len(prompt_ids)
    prompt_length = decoded_length(prefixes[0])
    first = common_prefix(prompt_ids, joint_ids)
    for i, prefix in enumerate(prefixes[1:], start=first):
        if decoded_length(prefix) > prompt_length:
            return i
    return len(joint_ids)
