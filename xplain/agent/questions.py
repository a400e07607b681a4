"""Reading a question deterministically: which operations its words point to, and the arguments it names — row ids,
feature names (fuzzy-matched against the model's), edits with their values, target classes, quoted texts.

Everything here is rules over the question and the model's own names; what the rules cannot settle is left to the
planner, which asks the LLM to choose among a closed set (`xplain.agent.planner`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

NUMBER = r"[-+]?\d+(?:\.\d+)?"
WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                "ten": 10}  # fmt: skip
ORDINALS = {"first": 0, "top": 0, "1st": 0, "most important": 0, "biggest": 0, "largest": 0, "main": 0,
            "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3, "fifth": 4, "5th": 4}  # fmt: skip
ROW_NOUNS = (
    r"rows?|samples?|instances?|cases?|patients?|examples?|reviews?|records?|items?|entry|entries|observations?|"
    r"points?|wines?|texts?|snippets?|ids?|index"
)
ROW = re.compile(rf"\b(?:{ROW_NOUNS})\s*(?:number|no\.?|nr\.?|#|id)?\s*(\d+)\b|#\s*(\d+)\b", re.IGNORECASE)
ORDINAL_ROW = re.compile(rf"\b(\d+)(?:st|nd|rd|th)\s+(?:{ROW_NOUNS})\b", re.IGNORECASE)
RANKED_NOUN = r"(?:feature|one|factor|word|input|driver|variable|column)"
ORDINAL_FEATURE = re.compile(
    r"\b(first|second|third|fourth|fifth|1st|2nd|3rd|4th|5th|top|most important|biggest|largest|main)\s+"
    rf"(?:(?:most\s+important|strongest|biggest)\b(?:\s+{RANKED_NOUN}\b)?|{RANKED_NOUN}\b)",
    re.IGNORECASE,
)
QUOTED = re.compile(r"[\"“”']([^\"“”']{1,300})[\"“”']")
COUNT = re.compile(
    rf"\b(\d+|{'|'.join(WORD_NUMBERS)})\s+(?:most\s+|more\s+|other\s+)?"
    r"(?:similar|nearest|closest|neighbou?rs?|mistakes?|errors?|misclassified|wrong|rows?|examples?|cases?|reviews?|"
    r"wines?|patients?|samples?|texts?)",
    re.IGNORECASE,
)

def cue_scores(question: str, cues: dict[str, list[tuple[re.Pattern[str], float]]]) -> dict[str, float]:
    """Each operation's cue weight in the (feature-masked) question, from the cues its method declares
    (`ChatForm.cues`); operations with no cue are left out. Feature names are masked out first, so a feature
    called "mean radius" or "radius error" does not read as a statistics or mistakes question."""
    scores = {}
    for operation, patterns in cues.items():
        score = sum(weight for pattern, weight in patterns if pattern.search(question))
        if score:
            scores[operation] = score
    return scores


# -- scope ----------------------------------------------------------------------------------------------------

#: Text that tries to give the chat instructions instead of asking about the model (DESIGN.md rule 3).
INSTRUCTIONS = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}\b(?:instructions?|prompts?|rules?|above|previous|everything)\b|"
    r"\bsystem prompt\b|\byou are now\b|\bjailbreak|\bdeveloper mode\b|\bpretend (?:to be|you are)\b|"
    r"\bact as (?:a|an)\b|\bnew instructions?\b",
    re.IGNORECASE,
)
#: Words of questions about a model and its data; a question with none of them (and no row, feature, class, cue or
#: quote) is outside what the chat answers.
ABOUT_THE_MODEL = re.compile(
    r"\b(?:models?|predict\w*|classif\w*|labels?|class(?:es)?|CLASS|probabilit\w*|rows?|data\w*|features?|FEATURE|"
    r"inputs?|columns?|values?|explain\w*|why|important|importance|effects?|influen\w*|accura\w*|mistakes?|errors?|"
    r"wrong|similar|rules?|what if|change\w*|counterfactuals?|lime|shap|texts?|words?|reviews?|outputs?|decid\w*)\b",
    re.IGNORECASE,
)


def gives_instructions(question: str) -> bool:
    return bool(INSTRUCTIONS.search(question))


def about_the_model(masked: str) -> bool:
    """Whether the (feature- and class-masked) question uses any word of a question about a model and its data."""
    return bool(ABOUT_THE_MODEL.search(masked))


# -- rows, counts, texts --------------------------------------------------------------------------------------


def find_row(question: str) -> int | None:
    """The row id the question names ('row 3', 'review #12', 'the 5th sample'), if any."""
    match = ROW.search(question)
    if match:
        return int(match.group(1) or match.group(2))
    match = ORDINAL_ROW.search(question)
    return int(match.group(1)) if match else None


def find_count(question: str) -> int | None:
    match = COUNT.search(question)
    if not match:
        return None
    word = match.group(1).lower()
    return WORD_NUMBERS.get(word) or int(word)


def find_quoted(question: str, min_words: int = 1) -> list[str]:
    return [q.strip() for q in QUOTED.findall(question) if len(q.split()) >= min_words and q.strip()]


# -- features -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mention:
    feature: str
    start: int
    end: int


def _normal(name: str) -> str:
    return " ".join(re.sub(r"[_/]+", " ", name.lower()).split())


def find_features(question: str, names: list[str], cutoff: float = 0.86) -> list[Mention]:
    """Feature names the question mentions, in order: exact (case, '_' and spacing ignored) first, longest names
    first so 'worst concave points' wins over 'concave points'; then close spellings of names of 5+ letters."""
    lowered = question.lower()
    taken = [False] * len(lowered)
    found: list[Mention] = []

    def claim(start: int, end: int, feature: str) -> None:
        for i in range(start, end):
            taken[i] = True
        found.append(Mention(feature, start, end))

    for name in sorted(names, key=lambda n: -len(_normal(n))):
        for form in dict.fromkeys([name.lower(), _normal(name)]):
            for match in re.finditer(rf"(?<![\w]){re.escape(form)}(?![\w])", lowered):
                if not any(taken[match.start() : match.end()]):
                    claim(match.start(), match.end(), name)
    tokens = list(re.finditer(r"[\w/]+", lowered))
    for name in sorted(names, key=lambda n: -len(_normal(n))):
        target = _normal(name)
        width = len(target.split())
        if len(target) < 5 or any(m.feature == name for m in found):
            continue
        for i in range(len(tokens) - width + 1):
            start, end = tokens[i].start(), tokens[i + width - 1].end()
            if any(taken[start:end]):
                continue
            candidate = _normal(lowered[start:end])
            if SequenceMatcher(None, candidate, target).ratio() >= cutoff:
                claim(start, end, name)
                break
    return sorted(found, key=lambda m: m.start)


def mask(question: str, mentions: list[Mention]) -> str:
    """The question with each feature mention replaced by FEATURE, so names don't read as operation cues."""
    out, last = [], 0
    for mention in sorted(mentions, key=lambda m: m.start):
        out += [question[last : mention.start], "FEATURE"]
        last = mention.end
    return "".join(out) + question[last:]


def find_ordinal_feature(question: str) -> int | None:
    """'the second feature' -> 1: a position in the ranking of the previous answer."""
    match = ORDINAL_FEATURE.search(question)
    return ORDINALS[match.group(1).lower()] if match else None


# -- edits ----------------------------------------------------------------------------------------------------

SCALE_WORDS = {"double": 2.0, "doubled": 2.0, "twice": 2.0, "halve": 0.5, "halved": 0.5, "half": 0.5,
               "triple": 3.0, "tripled": 3.0}  # fmt: skip
UP = r"increase[ds]?|raise[ds]?|add|added|up|higher|more|grow|grew|grows"
DOWN = r"decrease[ds]?|lower(?:ed)?|reduce[ds]?|down|less|drop(?:ped|s)?|cut|fall|fell|falls"
#: The comparatives of a relative edit: "10 years higher", "5% lower", "3 units more".
ABOVE = r"higher|more|bigger|greater|larger|older|longer|heavier|up|above"
BELOW = r"lower|less|smaller|younger|shorter|lighter|fewer|down|below"
TIMES_WORDS = {"twice": 2.0, "double": 2.0, "half": 0.5, "triple": 3.0, "thrice": 3.0}


def find_edits(question: str, mentions: list[Mention]) -> list[dict[str, Any]]:
    """Edits of named features: {'feature', 'set': v} | {'feature', 'scale': k} | {'feature', 'add': d}, read from
    the words around each mention ('mean radius doubled', 'set alcohol to 14', 'raise bmi by 10%')."""
    edits = []
    for n, mention in enumerate(mentions):
        stop = mentions[n + 1].start if n + 1 < len(mentions) else len(question)
        after = ROW.sub(" ", question[mention.end : stop][:60].lower())  # "proline of row 2 were 400"
        after = re.sub(r"^\s*(?:in|of|for)\s+(?=(?:were|was|is|are|be|got|gets|went)\b)", " ", after)  # "in [row 2] were"
        before = question[max(0, mention.start - 30) : mention.start].lower()
        edit = _edit_after(after, before)
        if edit is not None:
            edits.append({"feature": mention.feature, **edit})
    return edits


def said(edit: dict[str, Any]) -> str | None:
    """A relative edit in words, to say back how it was read ('age + 10', 'bmi × 2'); None for a set value."""
    if "add" in edit:
        return f"{edit['feature']} {'+' if edit['add'] >= 0 else '−'} {abs(edit['add']):g}"
    if "scale" in edit:
        scale = edit["scale"]
        if scale in SCALED:
            return f"{edit['feature']} {SCALED[scale]}"
        if float(scale).is_integer():
            return f"{edit['feature']} × {scale:g}"
        return f"{edit['feature']} {'+' if scale > 1 else '−'}{abs(scale - 1) * 100:g}%"
    return None


#: Factors said in words, as questions say them ("twice as high" has no 2 to quote back).
SCALED = {2.0: "doubled", 0.5: "halved", 3.0: "tripled"}


def _signed_edit(sign: float, match: re.Match[str]) -> dict[str, float]:
    """"by 10" / "10 above" adds; "by 10%" / "10% below" scales."""
    amount = float(match.group("n"))
    if match.group("pct"):
        return {"scale": round(1 + sign * amount / 100, 6)}
    return {"add": sign * amount}


def _edit_after(after: str, before: str) -> dict[str, float] | None:
    by = re.match(rf"^\s*(?:of\s+)?(?:were|was|is|are|gets?|got|goes|went)?\s*(?:(?P<dir>{UP}|{DOWN})\s+)?by\s+"
                  rf"(?P<n>{NUMBER})\s*(?P<pct>%|percent)?", after)  # fmt: skip
    if by:
        direction = by.group("dir") or (re.search(rf"\b({UP}|{DOWN})\b\s*(?:the\s+)?$", before) or [None, None])[1]
        return _signed_edit(-1.0 if direction and re.fullmatch(DOWN, direction) else 1.0, by)
    relative = re.match(
        rf"^\s*(?:of\s+)?(?:were|was|is|are|be|got|gets|went)?\s*(?P<n>{NUMBER})\s*(?P<pct>%|percent)?\s*"
        rf"(?:[a-z]+\s+)?(?P<dir>{ABOVE}|{BELOW})\b",
        after,
    )
    if relative:
        return _signed_edit(-1.0 if re.fullmatch(BELOW, relative.group("dir")) else 1.0, relative)
    times = re.match(
        rf"^\s*(?:were|was|is|are|be|got|gets|became)?\s*(?:(?P<word>{'|'.join(TIMES_WORDS)})|"
        rf"(?P<n>{NUMBER}|{'|'.join(WORD_NUMBERS)})\s+times)\b\s*(?:as\b|the\b|bigger|higher|larger|more|greater)",
        after,
    )
    if times:
        word, n = times.group("word"), times.group("n")
        return {"scale": TIMES_WORDS[word] if word else float(WORD_NUMBERS.get(n, 0) or n)}
    scale = re.match(r"^\s*(?:were|was|is|are|got|gets|be|being)?\s*(doubled|halved|tripled)\b", after)
    if scale:
        return {"scale": SCALE_WORDS[scale.group(1)]}
    prefix = re.search(r"\b(double|halve|triple|twice|half)\s+(?:the\s+|its\s+)?$", before)
    if prefix:
        return {"scale": SCALE_WORDS[prefix.group(1)]}
    value = re.match(
        rf"^\s*(?:(?:is|were|was|are|be|becomes?|became|equals?|changed to|set to|goes to|went to|of|at|to|in|for|on|=|:|"
        rf"was changed to|were set to|is set to|were increased to|were raised to|were lowered to|is increased to|"
        rf"were reduced to|increased to|raised to|lowered to|reduced to|dropped to|rose to)\s*)+(?P<n>{NUMBER})\b",
        after,
    )
    if value:
        return {"set": float(value.group("n"))}
    return None


def find_text_edits(question: str) -> list[dict[str, str]]:
    """Word edits for a text model: replace 'a' with 'b', said 'b' instead of 'a', remove/without 'a'."""
    q = question
    quoted = r"[\"“”']?([^\"“”'?.!,]+?)[\"“”']?"
    end = r"(?=\s+in\b|\s+from\b|[?.!,]|$)"
    match = re.search(rf"\breplac(?:e|ed|ing)\s+(?:the\s+word\s+)?{quoted}\s+(?:with|by)\s+{quoted}{end}", q, re.IGNORECASE)
    if match:
        return [{"old": match.group(1).strip(), "new": match.group(2).strip()}]
    subject = r"(?:[\"“”']([^\"“”']+)[\"“”']|(\w+))"  # a quoted phrase, or one bare word
    match = re.search(rf"{subject}\s+(?:were|was|is|got|gets|are)\s+replaced\s+(?:with|by)\s+{quoted}{end}", q, re.IGNORECASE)
    if match:
        return [{"old": (match.group(1) or match.group(2)).strip(), "new": match.group(3).strip()}]
    match = re.search(rf"\b(?:said|says|used|read|had|contained|were)\s+{quoted}\s+instead of\s+{quoted}{end}", q, re.IGNORECASE)
    if match:
        return [{"old": match.group(2).strip(), "new": match.group(1).strip()}]
    match = re.search(rf"\b(?:change|turn)\s+{quoted}\s+(?:to|into)\s+{quoted}{end}", q, re.IGNORECASE)
    if match:
        return [{"old": match.group(1).strip(), "new": match.group(2).strip()}]
    match = re.search(rf"\b(?:remov(?:e|ed|ing)|delet(?:e|ed|ing)|drop(?:ped)?|without)\s+(?:the\s+word\s+)?{quoted}{end}",
                      q, re.IGNORECASE)  # fmt: skip
    if match:
        return [{"old": match.group(1).strip(), "new": ""}]
    return []


def find_kept(question: str, mentions: list[Mention]) -> list[str]:
    """Features the question says must stay as they are ('keeping age fixed', 'without changing bmi')."""
    kept = []
    for mention in mentions:
        before = question[max(0, mention.start - 30) : mention.start].lower()
        after = question[mention.end : mention.end + 30].lower()
        if re.search(r"\b(?:keep(?:ing)?|without changing|not changing|hold(?:ing)?|fix(?:ing)?)\b[\w\s,]*$", before) or \
                re.match(r"^\s*(?:fixed|unchanged|constant|the same|as (?:it|they) (?:is|are))\b", after):  # fmt: skip
            kept.append(mention.feature)
    return kept


#: Explainers a question may name for a comparison, by the words people use for them.
EXPLAINER_WORDS = {
    "occlusion": r"\bocclusion\b|\bword removal\b|\bremoving (?:each|the) (?:word|feature)s?\b",
    "lime": r"\blime\b",
    "kernelshap": r"\b(?:kernel[ -]?)?shap\b|\bshapley\b",
    "posthoc": r"\bpost[- ]?hoc\b|\bllm\b|\blanguage model\b",
}


def find_explainers(question: str) -> list[str]:
    """The explainers a question names, in the order it names them ('does LIME agree with SHAP' -> lime first)."""
    found = {name: m.start() for name, pattern in EXPLAINER_WORDS.items() if (m := re.search(pattern, question, re.I))}
    return sorted(found, key=found.get)


def mask_classes(question: str, classes: list[str]) -> str:
    """The question with class names replaced by CLASS (so 'to be malignant' reads as a counterfactual cue)."""
    for name in sorted(classes, key=len, reverse=True):
        question = re.sub(rf"(?i)(?<![\w]){re.escape(name)}(?![\w])", "CLASS", question)
    return question


def find_class(question: str, classes: list[str]) -> str | None:
    """A class name the question asks to reach ('... to become malignant', 'be predicted positive')."""
    lowered = question.lower()
    for name in sorted(classes, key=len, reverse=True):
        if re.search(rf"(?<![\w]){re.escape(_normal(name))}(?![\w])", _normal(lowered)):
            return name
    return None
