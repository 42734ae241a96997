"""The offline Telepathy user: deterministic answers from the embedded set's attribute tables.

What it can judge:

- a question that asks one of the category's bank questions in recognisable words (the bank's
  keyword phrases, matched on lower-cased, punctuation-free text: "Is it a mammal?", "does it
  have FUR", "Can it fly?"); it then answers from the entity's table, exactly. Several bank
  questions in one sentence are combined: with "or", Yes if any is Yes; otherwise all must hold
  ("Is it a large mammal?"). A phrase after which the bank question does not apply (the bank's
  ``exclude``) and comparisons ("than") that no bank phrase states make it Maybe;
- a question that only names entities or categories ("Is it a banana?", "Is it a cat or a dog?",
  "Is it an animal?"): Yes if one of them is the target (a name, a synonym or its category), No
  if none is;
- "Does it start with the letter B?": from the title.

What it cannot judge: anything else (history, trivia, comparisons with things outside the bank,
negated questions such as "Is it not red?"); it answers Maybe to those, which is never false but
tells the agent nothing. It works only on tasks with an attribute table, i.e. the embedded set;
on UserRL's tasks it raises `SimulatorError` (use an LLM simulator, ``openai:MODEL``).

Guesses are judged by name: correct when a part of the guess (split at commas, dashes, colons,
brackets...) is, after fillers such as "I think it is a", the entity's title or a synonym (plural
forms accepted), and no part names another entity; a guess that hedges with "or" is wrong.
"banana bread" is not "banana". Its numbers are exact on what the tables cover but are NOT
comparable to an LLM simulator's.

>>> import asyncio
>>> from baorl.gyms.telepathy import TelepathyGym
>>> user = OfflineTelepathyUser()
>>> lion = next(t for t in TelepathyGym.embedded_tasks("all") if t.title == "Lion")
>>> [asyncio.run(user.answer(lion, q)) for q in ["Is it a MAMMAL?", "Can it fly?", "Who was its owner?"]]
['Yes', 'No', 'Maybe']
>>> asyncio.run(user.judge_guess(lion, "I think it's a lion!")), asyncio.run(user.judge_guess(lion, "tiger"))
(True, False)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from baorl.gyms.telepathy import CategorySpec, embedded_set
from baorl.users.base import SimulatorError, YesNo

# options `make_user` may pass that only an LLM client uses; the offline user ignores them
_LLM_OPTIONS = frozenset({"base_url", "api_key", "cache_dir", "max_retries", "timeout", "concurrency"})

_NEGATION = re.compile(
    r"\b(?:not|no|never|without|neither|nor|cannot|(?:is|are|was|were|do|does|did|can|could|would|should|"
    r"has|have|had|wo)n'?t)\b"
)
# "Isn't it ...?" / "Doesn't it ...?" open an ordinary yes/no question
_TAG_OPENER = re.compile(r"^\s*(is|are|was|were|do|does|did|can|could|would|has|have|wo)n'?t\b")
_LETTER = re.compile(r"\b(?:start|starts|begin|begins)\s+with\s+(?:the\s+letter\s+|letter\s+|an?\s+(?=[a-z]\b))?([a-z])\b")
_HEDGE = re.compile(r"\s(?:or|either)\s|/")
_SEGMENT_SPLIT = re.compile(r"[,;:/()\[\]\n!?]|\s[-\u2013\u2014]\s|\.\s|\.$|\s(?:or|and)\s|&")

_LEADING_FILLERS = tuple(sorted((
    "i think", "i guess", "i believe", "i bet", "my guess is", "my answer is", "my final answer is",
    "my final guess is", "final answer", "the answer is", "answer", "guess", "it is", "its", "it must be",
    "it should be", "it could be", "it might be", "it would be", "it was", "that is", "this is", "is it", "is this", "is that", "was it", "could it be",
    "might it be", "would it be", "can it be", "is the answer", "is the entity", "is your entity",
    "are you thinking of", "are you thinking about", "you are thinking of", "youre thinking of",
    "you were thinking of", "that", "then", "maybe", "perhaps", "probably", "definitely", "surely", "so",
    "a kind of", "a type of", "some kind of", "some type of", "a sort of", "kind of", "type of",
    "a", "an", "the", "some",
), key=len, reverse=True))
_TRAILING_FILLERS = ("right", "correct", "then", "please", "is my guess", "is my answer", "is the answer")


def normalize(text: str) -> str:
    """Lower-case, strip accents and apostrophes, turn other punctuation into single spaces.

    >>> normalize("Is it a Pokémon's  friend?!")
    'is it a pokemons friend'
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"['\u2019`]", "", text.lower().replace("&", " and "))
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def _phrase(p: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])" + re.escape(normalize(p)) + r"(?![a-z0-9])")


def name_forms(name: str) -> set[str]:
    """A name's normalised forms: with and without a leading article, and plural forms.

    >>> sorted(name_forms("Cherry"))
    ['cherries', 'cherry', 'cherryes', 'cherrys']
    >>> "piano" in name_forms("The Piano")
    True
    """
    base = normalize(name)
    out: set[str] = set()
    for n in {base, re.sub(r"^(?:the|a|an) ", "", base)}:
        if not n:
            continue
        out |= {n, n + "s", n + "es"}
        if n.endswith("y"):
            out.add(n[:-1] + "ies")
    return out


def strip_fillers(segment: str) -> str:
    """Drop leading phrases like "I think it is a" and trailing ones like "right" (normalised text)."""
    s = normalize(segment)
    changed = True
    while changed and s:
        changed = False
        for f in _LEADING_FILLERS:
            if s == f or s.startswith(f + " "):
                s, changed = s[len(f):].strip(), True
                break
        for f in _TRAILING_FILLERS:
            if s.endswith(" " + f):
                s, changed = s[: -len(f)].strip(), True
    return s


def segments(text: str) -> list[str]:
    """The parts of a guess or question that may each name something, fillers stripped.

    >>> segments("I think it's a banana - the long yellow one, or maybe an apple?")
    ['banana', 'long yellow one', 'apple']
    """
    parts = (strip_fillers(p) for p in _SEGMENT_SPLIT.split(text.lower()))
    return [p for p in parts if p]


@dataclass(frozen=True)
class _Rule:
    key: str
    pattern: re.Pattern[str]
    positive: bool
    size: int  # characters of the phrase: longer phrases win over the shorter ones inside them
    comparative: bool


class _CategoryMatcher:
    """Finds which bank questions a question asks, for one category."""

    def __init__(self, spec: CategorySpec) -> None:
        self.rules: list[_Rule] = []
        self.exclude: dict[str, list[re.Pattern[str]]] = {}
        for key, attr in spec.attributes.items():
            self.exclude[key] = [_phrase(p) for p in attr.exclude]
            for phrases, positive in ((attr.keywords, True), (attr.antonyms, False)):
                for p in phrases:
                    n = normalize(p)
                    self.rules.append(_Rule(key, _phrase(n), positive, len(n), " than " in f" {n} "))

    def match(self, q: str) -> list[tuple[str, bool]]:
        """Bank questions asked by the normalised question `q`: (attribute key, asked positively)."""
        comparative = " than " in f" {q} "
        hits: list[tuple[int, int, str, bool]] = []
        for r in self.rules:
            if comparative and not r.comparative:
                continue  # "bigger than a cat" must not read as "big"
            if any(x.search(q) for x in self.exclude[r.key]):
                continue
            hits.extend((m.start(), m.end(), r.key, r.positive) for m in r.pattern.finditer(q))
        hits.sort(key=lambda h: (h[0] - h[1], h[0]))  # longest first
        taken: list[tuple[int, int]] = []
        chosen: list[tuple[int, str, bool]] = []
        for s, e, key, pos in hits:
            if any(s < te and ts < e for ts, te in taken):
                continue
            taken.append((s, e))
            chosen.append((s, key, pos))
        out: list[tuple[str, bool]] = []
        for _, key, pos in sorted(chosen):
            if (key, pos) not in out:
                out.append((key, pos))
        return out


class OfflineTelepathyUser:
    """Deterministic Telepathy user for the embedded set (see the module docstring for its limits)."""

    label = "offline"
    detail = (
        "offline, deterministic: answers from the embedded set's attribute tables only the questions that "
        "match a question of the category's bank (keyword matching), Maybe to anything else; judges guesses "
        "by the entity's name and synonyms; cannot answer UserRL tasks (no tables: use openai:MODEL); "
        "not comparable to an LLM simulator"
    )

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - _LLM_OPTIONS
        if unknown:
            raise TypeError(f"OfflineTelepathyUser takes no options {sorted(unknown)}; it has no settings")
        data = embedded_set()
        self._categories = data.categories
        self._matchers = {name: _CategoryMatcher(spec) for name, spec in data.categories.items()}
        # every known name (entities and categories) -> what it names
        self._names: dict[str, set[str]] = {}
        for t in data.entities:
            for n in [t.title, *t.synonyms]:
                for f in name_forms(n):
                    self._names.setdefault(f, set()).add(t.id)
        for cat, spec in data.categories.items():
            for a in spec.aliases:
                for f in name_forms(a):
                    self._names.setdefault(f, set()).add(f"category:{cat}")

    # ---- the protocol -------------------------------------------------------------------------
    async def answer(self, task: Any, question: str) -> YesNo:
        attrs = self._table(task)
        raw = _TAG_OPENER.sub(r"\1", question.lower().replace("\u2019", "'"))
        named = self._named(task, segments(raw))
        if named is not None:
            return "Yes" if named else "No"
        if _NEGATION.search(raw):
            return "Maybe"  # negations are easy to misread; Maybe is never false
        q = normalize(raw)
        letter = _LETTER.search(q)
        if letter:
            first = re.sub(r"^the ", "", normalize(task.title))[:1]
            return "Yes" if first == letter.group(1) else "No"
        asked = self._matchers[task.category].match(q)
        if not asked:
            return "Maybe"
        values = [None if attrs.get(k) is None else attrs[k] == pos for k, pos in asked]
        if " or " in f" {q} ":
            return "Yes" if True in values else "No" if all(v is False for v in values) else "Maybe"
        return "No" if False in values else "Yes" if all(values) else "Maybe"

    async def judge_guess(self, task: Any, guess: str) -> bool:
        self._table(task)
        if _HEDGE.search(guess.lower()):
            return False  # "a lion or a tiger" is two guesses, not one
        return self._named(task, segments(guess), guess=True) is True

    # ---- helpers ------------------------------------------------------------------------------
    def _table(self, task: Any) -> dict[str, bool | None]:
        attrs = getattr(task, "attributes", None)
        if attrs is None or getattr(task, "category", None) not in self._matchers:
            raise SimulatorError(
                f"the offline Telepathy user only knows the embedded set's attribute tables; task "
                f"{getattr(task, 'id', '?')!r} has none. Use an LLM simulator (openai:MODEL) for this data."
            )
        return attrs

    def _named(self, task: Any, parts: list[str], *, guess: bool = False) -> bool | None:
        """Whether `parts` name the target (True), only other things (False), or not only names (None).

        A question answers Yes when a part names the target or its category ("a lion or a tiger",
        "an animal"), No when every part names something else ("a cat or a dog"), and is left to
        the attribute tables otherwise. A guess must name the target and no other entity; its
        other parts may be descriptions ("banana - the yellow one").
        """
        own = {f for n in [task.title, *getattr(task, "synonyms", [])] for f in name_forms(n)}
        own_cat = f"category:{task.category}"
        hit_target = hit_other = unknown = False
        for p in parts:
            ids = self._names.get(p, set())
            if guess:  # a guess must name an entity; "banana - a fruit" names one
                ids = {i for i in ids if not i.startswith("category:")}
            if p in own or (not guess and own_cat in ids):
                hit_target = True
            elif ids:
                hit_other = True
            else:
                unknown = True
        if guess:
            return hit_target and not hit_other
        if hit_target:
            return True
        return None if unknown or not parts else False
