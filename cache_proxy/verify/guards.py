"""Cheap lexical guards: reject a candidate whose wording flips the meaning of the query.

Each guard answers "do these two prompts differ in X?" and is switched on per tenant through
`GuardPolicy`. They run before the (costlier) verifier, in microseconds, on plain strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from cache_proxy.verify.policy import GuardPolicy

_WORD = re.compile(r"[a-z0-9]+(?:[.,'\N{RIGHT SINGLE QUOTATION MARK}][a-z0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITALISED = re.compile(
    r"(?<![\w'\N{RIGHT SINGLE QUOTATION MARK}])[A-Z][\w'\N{RIGHT SINGLE QUOTATION MARK}.&-]*"
)

_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "twenty": "20", "thirty": "30", "fifty": "50", "hundred": "100", "thousand": "1000",
    "million": "1000000", "billion": "1000000000", "first": "1st", "second": "2nd",
    "third": "3rd", "half": "0.5", "twice": "2x", "double": "2x", "triple": "3x",
}  # fmt: skip
_NEGATIONS = {
    "not", "no", "never", "cannot", "without", "none", "nobody", "nothing", "neither", "nor",
    "nowhere", "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "cant", "couldnt",
    "wont", "wouldnt", "shouldnt", "havent", "hasnt", "hadnt", "mustnt", "aint",
}  # fmt: skip
# Word pairs where swapping one for the other changes the question being asked.
_ANTONYM_PAIRS = [
    ("best", "worst"), ("better", "worse"), ("most", "least"), ("more", "less"),
    ("before", "after"), ("advantages", "disadvantages"), ("advantage", "disadvantage"),
    ("pros", "cons"), ("good", "bad"), ("increase", "decrease"), ("buy", "sell"),
    ("male", "female"), ("men", "women"), ("man", "woman"), ("boy", "girl"), ("boys", "girls"),
    ("husband", "wife"), ("boyfriend", "girlfriend"), ("up", "down"), ("first", "last"),
    ("old", "new"), ("cheap", "expensive"), ("rich", "poor"), ("easy", "hard"),
    ("easiest", "hardest"), ("fast", "slow"), ("big", "small"), ("high", "low"),
    ("highest", "lowest"), ("start", "stop"), ("gain", "lose"), ("win", "lose"),
    ("love", "hate"), ("like", "dislike"), ("positive", "negative"), ("true", "false"),
    ("legal", "illegal"), ("possible", "impossible"), ("safe", "unsafe"), ("open", "close"),
    ("import", "export"), ("learn", "teach"), ("give", "get"), ("send", "receive"),
    ("min", "max"), ("minimum", "maximum"), ("past", "future"), ("north", "south"),
    ("east", "west"), ("in", "out"), ("on", "off"), ("add", "remove"), ("with", "without"),
    ("longest", "shortest"), ("longer", "shorter"), ("long", "short"), ("largest", "smallest"),
    ("bigger", "smaller"), ("biggest", "smallest"), ("cheapest", "costliest"), ("free", "paid"),
    ("upper", "lower"), ("inside", "outside"), ("top", "bottom"), ("strong", "weak"),
    ("strongest", "weakest"), ("younger", "older"), ("youngest", "oldest"), ("early", "late"),
]  # fmt: skip
_ANTONYMS: dict[str, set[str]] = {}
for _left, _right in _ANTONYM_PAIRS:
    _ANTONYMS.setdefault(_left, set()).add(_right)
    _ANTONYMS.setdefault(_right, set()).add(_left)

_QUESTION_CLASSES = {
    "what": "what", "which": "what", "how": "how", "why": "why", "who": "who", "whom": "who",
    "whose": "who", "when": "when", "where": "where",
}  # fmt: skip
_NOT_ENTITIES = {"i", "i'm", "i've", "i'd", "i'll", "ok"}


@lru_cache(maxsize=65536)
def words(text: str) -> tuple[str, ...]:
    """Lower-cased word tokens; apostrophes dropped so "doesn't" == "doesnt"."""
    return tuple(
        w.replace("'", "").replace("\N{RIGHT SINGLE QUOTATION MARK}", "")
        for w in _WORD.findall(text.lower())
    )


def numbers_of(text: str) -> frozenset[str]:
    digits = {n.replace(",", "") for n in _NUMBER.findall(text)}
    spelled = {_NUMBER_WORDS[w] for w in words(text) if w in _NUMBER_WORDS}
    return frozenset(digits | spelled)


def negated(text: str) -> bool:
    return any(w in _NEGATIONS for w in words(text))


def entities_of(text: str) -> frozenset[str]:
    """Capitalised tokens other than the first word (sentence case) and "I": names, places."""
    found = set()
    for match in _CAPITALISED.finditer(text):
        if match.start() == 0 or text[: match.start()].rstrip().endswith((".", "?", "!", ":")):
            continue
        token = match.group(0).lower().strip(".'\N{RIGHT SINGLE QUOTATION MARK}-&")
        if token and token not in _NOT_ENTITIES:
            found.add(token.replace("'", "").replace("\N{RIGHT SINGLE QUOTATION MARK}", ""))
    return frozenset(found)


def question_class(text: str) -> str:
    for word in words(text)[:3]:
        for form in (word, word.removesuffix("s")):  # "what's" -> "whats" -> "what"
            if form in _QUESTION_CLASSES:
                return _QUESTION_CLASSES[form]
    return "other"


def differ_in_numbers(a: str, b: str) -> bool:
    return numbers_of(a) != numbers_of(b)


def differ_in_negation(a: str, b: str) -> bool:
    return negated(a) != negated(b)


def differ_in_antonyms(a: str, b: str) -> bool:
    """One prompt uses a word whose opposite the other uses instead (best vs worst)."""
    words_a, words_b = set(words(a)), set(words(b))
    only_a, only_b = words_a - words_b, words_b - words_a
    return any(_ANTONYMS.get(w, set()) & only_b for w in only_a)


def differ_in_entities(a: str, b: str) -> bool:
    """A name in one prompt appears nowhere (any case) in the other: Nepal vs Spain."""
    return _has_missing_entity(a, set(words(b))) or _has_missing_entity(b, set(words(a)))


def _has_missing_entity(text: str, other_words: set[str]) -> bool:
    # "Apple's" / "iPhones" still match "apple" / "iphone": compare without a trailing "s".
    stems = {w.removesuffix("s") for w in other_words}
    return any(e not in other_words and e.removesuffix("s") not in stems for e in entities_of(text))


def differ_in_question_word(a: str, b: str) -> bool:
    return question_class(a) != question_class(b)


GUARDS: dict[str, Callable[[str, str], bool]] = {
    "numbers": differ_in_numbers,
    "negation": differ_in_negation,
    "antonyms": differ_in_antonyms,
    "entities": differ_in_entities,
    "question_word": differ_in_question_word,
}


def guard_signals(query: str, cached: str) -> dict[str, bool]:
    """Every guard's verdict (True = differ), whether enabled or not: verifier features."""
    return {name: check(query, cached) for name, check in GUARDS.items()}


def failed_guard(query: str, cached: str, policy: GuardPolicy) -> str | None:
    """Name of the first enabled guard that rejects the pair, or None when all pass."""
    for name, check in GUARDS.items():
        if getattr(policy, name) and check(query, cached):
            return name
    return None
