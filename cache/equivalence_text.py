"""What a question says that an embedding blurs: numbers, negation, units, names.

Sentence embeddings put "What is 17 × 23?" and "What is 17 × 24?" almost on top
of each other, yet serving one's answer for the other is the worst failure a
cache can have. :func:`signature` pulls out the parts of a text that change the
answer, and :func:`hard_mismatch` names the first one on which two texts
disagree. The rules are deliberately narrow (both sides must state the thing,
and state it differently) so that paraphrases survive; the rejection rate of
each rule on human-labelled duplicates is measured by
``scripts/train_equivalence.py``. Names that case does not mark ("weather in
paris" / "in london") need a :class:`Lexicon` (word statistics of a reference
corpus) and :func:`swapped_name`.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache

import cydifflib
import numpy as np
import numpy.typing as npt

from cache.places import PLACES


def _words(text: str) -> list[str]:
    return text.split()


IDF_BITS = 16
# A word capitalised in at least this share of its mid-sentence uses (in texts that use
# case at all), or seen in at most RARE_DOCS texts of the reference corpus, may name a
# thing: a city, a person, a product, a language.
PROPER_SHARE = 0.5
RARE_DOCS = 5


_TOKEN = re.compile(r"[$€£₹¥°]|[^\W_]+(?:[.,'’][^\W_]+)*|[+\-*/×÷^=%]", re.UNICODE)
_NUMBER = re.compile(r"^(\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)(st|nd|rd|th|k|m|s)?$")
NEAR_IDENTICAL = 4
_NUMBER_UNIT = re.compile(r"^(\d+(?:\.\d+)?)([a-z]+)$")
_SENTENCE_END = frozenset(".?!:;\"'(")

_UNITS = {
    # dimension:canonical for each surface form; words that are units in
    # everyday speech only after a number ("3 days") are in _TIME_UNITS.
    **dict.fromkeys(["km", "kms", "kilometer", "kilometers", "kilometre", "kilometres"], "len:km"),
    **dict.fromkeys(["mi", "mile", "miles"], "len:mi"),
    **dict.fromkeys(["meter", "meters", "metre", "metres"], "len:m"),
    **dict.fromkeys(["cm", "centimeter", "centimeters", "centimetre", "centimetres"], "len:cm"),
    **dict.fromkeys(["mm", "millimeter", "millimeters", "millimetre", "millimetres"], "len:mm"),
    **dict.fromkeys(["ft", "foot", "feet"], "len:ft"),
    **dict.fromkeys(["inch", "inches"], "len:in"),
    **dict.fromkeys(["yard", "yards"], "len:yd"),
    **dict.fromkeys(["kg", "kgs", "kilogram", "kilograms", "kilo", "kilos"], "mass:kg"),
    **dict.fromkeys(["gram", "grams", "gm", "gms"], "mass:g"),
    **dict.fromkeys(["lb", "lbs", "pound", "pounds"], "mass:lb"),
    **dict.fromkeys(["ounce", "ounces", "oz"], "mass:oz"),
    **dict.fromkeys(["celsius", "centigrade", "°c"], "temp:c"),
    **dict.fromkeys(["fahrenheit", "°f"], "temp:f"),
    **dict.fromkeys(["kelvin"], "temp:k"),
    **dict.fromkeys(["liter", "liters", "litre", "litres", "ml", "milliliters"], "vol:l"),
    **dict.fromkeys(["gallon", "gallons"], "vol:gal"),
    **dict.fromkeys(["teaspoon", "teaspoons", "tsp"], "vol:tsp"),
    **dict.fromkeys(["tablespoon", "tablespoons", "tbsp"], "vol:tbsp"),
    **dict.fromkeys(["pint", "pints"], "vol:pt"),
    **dict.fromkeys(["quart", "quarts"], "vol:qt"),
    **dict.fromkeys(["$", "usd", "dollar", "dollars"], "cur:usd"),
    **dict.fromkeys(["€", "eur", "euro", "euros"], "cur:eur"),
    **dict.fromkeys(["£", "gbp"], "cur:gbp"),
    **dict.fromkeys(["₹", "inr", "rs", "rupee", "rupees"], "cur:inr"),
    **dict.fromkeys(["¥", "yen", "jpy"], "cur:jpy"),
    **dict.fromkeys(["yuan", "rmb", "cny"], "cur:cny"),
    **dict.fromkeys(["btc", "bitcoin", "bitcoins"], "cur:btc"),
}
_TIME_UNITS = {
    **dict.fromkeys(["second", "seconds", "sec", "secs"], "time:s"),
    **dict.fromkeys(["minute", "minutes", "min", "mins"], "time:min"),
    **dict.fromkeys(["hour", "hours", "hr", "hrs"], "time:h"),
    **dict.fromkeys(["day", "days"], "time:d"),
    **dict.fromkeys(["week", "weeks"], "time:wk"),
    **dict.fromkeys(["month", "months"], "time:mo"),
    **dict.fromkeys(["year", "years", "yr", "yrs"], "time:yr"),
    **dict.fromkeys(["m", "g", "l", "c", "f", "in"], ""),  # bare letters: resolved below
}
_BARE_AFTER_NUMBER = {"m": "len:m", "g": "mass:g", "l": "vol:l", "c": "temp:c", "f": "temp:f"}

_NEGATION = frozenset(
    _words("not no never without none nobody nothing nowhere neither nor cannot unable impossible")
)

_SMALL = _words("zero one two three four five six seven eight nine ten eleven twelve thirteen")
_SMALL += _words("fourteen fifteen sixteen seventeen eighteen nineteen")
_TENS = _words("twenty thirty forty fifty sixty seventy eighty ninety")
_ORDINALS = _words(
    "_ _ second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth"
)
# "one" and "first" are left out: far more often a pronoun or "for the first
# time" than a quantity, and counting them rejected real paraphrases.
_WORD_VALUES: dict[str, int] = {w: i for i, w in enumerate(_SMALL) if i != 1}
_WORD_VALUES |= {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_WORD_VALUES |= {w: i for i, w in enumerate(_ORDINALS) if i >= 3}
_WORD_VALUES |= {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_MULTIPLIERS = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_OPERATORS = {
    "+": "+",
    "plus": "+",
    "-": "-",
    "minus": "-",
    "*": "*",
    "×": "*",
    "x": "*",
    "times": "*",
    "multiplied": "*",
    "/": "/",
    "÷": "/",
    "divided": "/",
    "over": "/",
    "^": "^",
    "power": "^",
    "%": "%",
    "percent": "%",
    "mod": "mod",
    "modulo": "mod",
}
_ALIASES = {
    "usa": "us",
    "america": "us",
    "american": "us",
    "uk": "britain",
    "england": "britain",
    "british": "britain",
    "indian": "india",
    "chinese": "china",
    # Demonyms not formed from the name (same_stem reads "mexican", "canadian").
    # Left out: "polish" and "turkish"/"turkey", also everyday words.
    "french": "france",
    "german": "germany",
    "spanish": "spain",
    "dutch": "netherlands",
    "holland": "netherlands",
    "swiss": "switzerland",
    "greek": "greece",
    "welsh": "wales",
    "scottish": "scotland",
    "irish": "ireland",
    "danish": "denmark",
    "swedish": "sweden",
    "finnish": "finland",
    "norwegian": "norway",
    "thai": "thailand",
    "filipino": "philippines",
    "peruvian": "peru",
    "portuguese": "portugal",
    "belgian": "belgium",
    "cypriot": "cyprus",
    "lebanese": "lebanon",
    "argentine": "argentina",
    "afghan": "afghanistan",
    "slovak": "slovakia",
    "czechia": "czech",
}
# Words people capitalise that name no entity (or are entities everywhere).
_NOT_ENTITIES = frozenset(
    _words(
        "i i'm i've i'd i'll ok okay quora what how why who when where which is are can do does "
        "should would will could the a an if my god mr mrs dr president government minister pm ceo"
    )
)


STOPWORDS = frozenset(
    _words(
        "a an the is are was were be been am do does did i you he she it we they my your his her "
        "its our their me to of in on at for with by from and or but if what how why who when "
        "where which that this these those can could should would will shall may might must "
        "there any some so as about into than then not no"
    )
)


def idf_bucket(word: str) -> int:
    """The row of ``word`` in the hashed word tables (crc32: stable across processes)."""
    return zlib.crc32(word.encode()) & ((1 << IDF_BITS) - 1)


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Per-word statistics of a reference corpus (not Quora), hashed by :func:`idf_bucket`.

    ``idf``: smoothed log inverse document frequency; ``proper``: the share of a word's
    mid-sentence uses that are capitalised, in texts that use case (0 for a word seen
    capitalised fewer than twice); ``rare_idf``: the IDF of a word seen in
    :data:`RARE_DOCS` texts. Both arrays have ``2**IDF_BITS`` rows.
    """

    idf: npt.NDArray[np.float32]
    proper: npt.NDArray[np.float32]
    rare_idf: float

    def names_a_thing(self, word: str) -> bool:
        """Whether ``word`` is written like a name (capitalised) or too rare to be common."""
        row = idf_bucket(word)
        return bool(self.proper[row] >= PROPER_SHARE or self.idf[row] >= self.rare_idf)

    def is_proper(self, word: str) -> bool:
        """Whether ``word`` is mostly capitalised mid-sentence in the reference corpus."""
        return bool(self.proper[idf_bucket(word)] >= PROPER_SHARE)

    def is_rare(self, word: str) -> bool:
        """Whether ``word`` is too rare in the reference corpus to be a common word."""
        return bool(self.idf[idf_bucket(word)] >= self.rare_idf)


@dataclass(frozen=True, slots=True)
class TextSignature:
    """The answer-changing parts of one text, and its words for overlap features."""

    tokens: tuple[str, ...]
    numbers: frozenset[str]
    expression: tuple[str, ...]
    negation: frozenset[str]
    units: tuple[str, ...]
    entities: frozenset[str]


# Contractions typed without the apostrophe ("doesnt", "cant", "wont"): read as the
# negation they are, or "why doesnt anyone answer" / "why won't anyone answer" would
# differ by a negation.
_BARE_CONTRACTION = re.compile(
    r"(?i)\b(do|does|did|is|are|was|were|has|have|had|could|would|should|must|need)nt\b"
)
# A year range written short ("2016-17", "2016/17") or long: "2016 to 2017" either way,
# so that it is neither another number (17) nor a subtraction.
_YEAR_RANGE = re.compile(r"\b((?:19|20)\d\d)\s*[-/–]\s*((?:19|20)\d\d|\d\d)\b")
# A list number opening the text ("5. Is it true that …"), pasted along with the question.
_ENUMERATOR = re.compile(r"^\s*\d{1,2}[.)]\s+(?=[^\W\d_])")


def _year_range(match: re.Match[str]) -> str:
    start, end = match.group(1), match.group(2)
    if len(end) == 2:
        if int(end) <= int(start[2:]):
            return match.group(0)  # "1999-05" is no short range; leave it alone
        end = start[:2] + end
    return f"{start} to {end}" if int(end) > int(start) else match.group(0)


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("’", "'")
    text = _ENUMERATOR.sub("", text)
    # "don't" -> "do not" so that negation is one word on both sides.
    text = re.sub(r"(?i)\b(can)'?t\b", r"\1 not", text)
    text = re.sub(r"(?i)\bwon'?t\b", "will not", text)
    text = _BARE_CONTRACTION.sub(r"\1 not", text)
    text = _YEAR_RANGE.sub(_year_range, text)
    text = re.sub(
        r"(?i)\b(twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)-(?=[a-z])", r"\1 ", text
    )
    return re.sub(r"(?i)n't\b", " not", text)


def _number_value(token: str) -> str | None:
    match = _NUMBER.match(token)
    if match is None:
        return None
    digits, suffix = match.group(1).replace(",", ""), match.group(2)
    try:
        value = Decimal(digits)
    except InvalidOperation:
        return None
    if suffix == "k":
        value *= 1000
    return format(value.normalize(), "f")


def _numbers(words: list[str]) -> tuple[list[str], list[int]]:
    """Canonical numbers in ``words`` and the positions they came from."""
    values: list[str] = []
    where: list[int] = []
    pending: int | None = None
    for i, word in enumerate(words):
        if word in _WORD_VALUES:
            value = _WORD_VALUES[word]
            if pending is not None and word in _MULTIPLIERS:
                pending *= value
            elif pending is not None and pending >= 20 and pending % 10 == 0 and value < 10:
                pending += value
            else:
                if pending is not None:
                    values.append(str(pending))
                pending = value
                where.append(i)
            continue
        if pending is not None:
            values.append(str(pending))
            pending = None
        number = _number_value(word)
        if number is None and re.fullmatch(r"\d+[a-z]+|[a-z]+\d+[a-z\d]*", word):
            number = word  # a model code ("4g", "j7", "m452dw"): compared as a string
        if number is not None:
            values.append(number)
            where.append(i)
    if pending is not None:
        values.append(str(pending))
    return values, where


def _expression(words: list[str], number_at: set[int]) -> tuple[str, ...]:
    """Numbers and operators in order, when the text holds arithmetic."""
    out: list[str] = []
    for i, word in enumerate(words):
        if i in number_at:
            out.append(_number_value(word) or word)
        elif word in _OPERATORS and i - 1 in number_at:
            after = i + 2 if i + 1 < len(words) and words[i + 1] in ("by", "of") else i + 1
            if after in number_at or word == "%":
                out.append(_OPERATORS[word])
    has_operator = any(t in _OPERATORS.values() for t in out)
    return tuple(out) if has_operator and len(out) >= 3 else ()


def _units(words: list[str], number_at: set[int]) -> tuple[str, ...]:
    found: list[str] = []
    for i, word in enumerate(words):
        after_number = i - 1 in number_at or (i >= 2 and i - 2 in number_at and words[i - 1] == "°")
        unit = _UNITS.get(word)
        if unit is None and after_number:
            unit = _TIME_UNITS.get(word) or _BARE_AFTER_NUMBER.get(word)
        if word == "°" and i + 1 < len(words) and words[i + 1] in ("c", "f"):
            unit = _UNITS["°" + words[i + 1]]
        if unit and unit not in found:
            found.append(unit)
    return tuple(found)


def _entities(raw: list[str]) -> frozenset[str]:
    """Capitalised words not opening a sentence, lower-cased, aliases folded."""
    words = [w for w in raw if w[0].isalpha()]
    capitalised = sum(1 for w in words if w[0].isupper() and len(w) > 3)
    title_case = capitalised >= max(3, 0.6 * sum(1 for w in words if len(w) > 3))
    found: set[str] = set()
    for i, word in enumerate(raw):
        lower = word.lower()
        if not word[0].isalpha() or lower in _NOT_ENTITIES or lower in _UNITS:
            continue
        opens = i == 0 or raw[i - 1] in _SENTENCE_END
        inner_caps = any(c.isupper() for c in word[1:])
        if (word[0].isupper() and not opens and not title_case) or inner_caps:
            key = re.sub(r"'s$|\.(com|org|net|in|io)$", "", lower).replace(".", "")
            found.add(_ALIASES.get(key, key))  # "Ph.D" is "PhD", "U.S" is "US"
    return frozenset(found)


def _negation(words: list[str]) -> frozenset[str]:
    """Negation words, minus the "why or why not" kind that negates nothing."""
    found = {
        w
        for i, w in enumerate(words)
        if w in _NEGATION and not (w == "not" and i > 0 and words[i - 1] in ("or", "why", "if"))
    }
    return frozenset(found)


@lru_cache(maxsize=8192)
def signature(text: str) -> TextSignature:
    """The :class:`TextSignature` of ``text`` (memoised: a query meets many candidates)."""
    folded = _fold(text)
    raw: list[str] = []
    for token in _TOKEN.findall(folded):
        # "Rs.2000" and "500,1000" are several words; "1,000" and "2.5" are one.
        glued = _NUMBER_UNIT.match(token.lower())
        if glued is not None and (
            glued.group(2) in _UNITS
            or glued.group(2) in _TIME_UNITS
            or (len(glued.group(2)) > 1 and _NUMBER.match(token.lower()) is None)
        ):
            # "5kg" is "5 kg", "128gb" is "128 gb", "3cases" is "3 cases"; "3rd" stays an
            # ordinal, and a single letter stays glued: "4g" is a model, not four grams.
            raw.extend(glued.groups())
        elif any(c.isdigit() for c in token) and _NUMBER.match(token.lower()) is None:
            raw.extend(t for t in re.split(r"[.,]", token) if t)
        else:
            raw.append(token)
    words = [w.lower() for w in raw]
    numbers, where = _numbers(words)
    number_at = set(where)
    return TextSignature(
        tokens=tuple(words),
        numbers=frozenset(numbers),
        expression=_expression(words, number_at),
        negation=_negation(words),
        units=_units(words, number_at),
        entities=_entities(raw),
    )


def _one_slip(x: str, y: str) -> bool:
    """``y`` is ``x`` with one letter dropped, added or two neighbours swapped (a typo:
    "Shilong" / "Shillong", "Brahma" / "Bramha"); another letter in its place is not."""
    if len(x) > len(y):
        x, y = y, x
    if len(y) - len(x) == 1:
        return any(y[:i] + y[i + 1 :] == x for i in range(len(y)))
    if len(x) != len(y):
        return False
    diff = [i for i in range(len(x)) if x[i] != y[i]]
    return (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and x[diff[0]] == y[diff[1]]
        and x[diff[1]] == y[diff[0]]
    )


# Names shorter than this are not forgiven a typo: "Iran" / "Iraq" are other places.
_TYPO_LENGTH = 6
# Endings that make another form of the same name or word: "Canada" / "Canadian",
# "Japan" / "Japanese", "Trump" / "Trumps", "flight" / "flights".
_FORM_ENDINGS = frozenset(
    _words("s es ed ing er ers n an ans ian ians ean eans ese i is ic ns ish")
)


def same_stem(x: str, y: str) -> bool:
    """One word is the other with an inflection or demonym ending ("Mexico" / "Mexican").

    A shared beginning alone is not enough: "Austria" / "Australia", "India" / "Indiana"
    and "Niger" / "Nigeria" are other places, "Microsoft" / "Micromax" other firms."""
    short, long = sorted((x, y), key=len)
    if short == long:
        return True
    stems = (short, short[:-1]) if short[-1] in "aeiouy" else (short,)
    return any(
        len(stem) >= 4 and long.startswith(stem) and long[len(stem) :] in _FORM_ENDINGS
        for stem in stems
    )


def unmatched_entities(a: TextSignature, b: TextSignature) -> frozenset[str]:
    """Entities of ``a`` that ``b`` never mentions, capitalised or not, dotted or not
    ("M.D" / "MD"), or misspelt by one slip of the keyboard."""
    words_b = {_ALIASES.get(w, w) for w in (w.replace(".", "") for w in b.tokens)} | b.entities
    joined_b = "".join(b.tokens).replace(".", "")
    long_b = [w for w in words_b if len(w) >= _TYPO_LENGTH - 1]
    return frozenset(
        e
        for e in a.entities
        if e not in words_b
        and e not in joined_b
        and not any(same_stem(e, w) for w in words_b if w[:4] == e[:4])
        and not (len(e) >= _TYPO_LENGTH and any(_one_slip(e, w) for w in long_b))
    )


def content_difference(a: TextSignature, b: TextSignature) -> int:
    """How many words (negation aside) one text has and the other lacks."""
    words_a = {w for w in a.tokens if w.isalnum() and w not in _NEGATION}
    words_b = {w for w in b.tokens if w.isalnum() and w not in _NEGATION}
    return len(words_a ^ words_b)


def _units_differ(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    for dimension in {u.split(":")[0] for u in a} & {u.split(":")[0] for u in b}:
        in_a = [u for u in a if u.startswith(dimension + ":")]
        in_b = [u for u in b if u.startswith(dimension + ":")]
        if in_a != in_b:  # another unit, or the same two in the other direction
            return True
    return False


def _with_one(a: TextSignature, b: TextSignature) -> frozenset[str]:
    """``a``'s numbers, with 1 when ``b`` has it and ``a`` says "one" or "first" (which are
    not counted as numbers on their own: mostly a pronoun or "for the first time")."""
    if "1" in b.numbers and "1" not in a.numbers and ("one" in a.tokens or "first" in a.tokens):
        return a.numbers | {"1"}
    return a.numbers


def _numbers_differ(a: TextSignature, b: TextSignature) -> bool:
    return a.numbers != b.numbers and _with_one(a, b) != _with_one(b, a)


def mismatch_kind(a: TextSignature, b: TextSignature) -> str | None:
    """The first answer-changing part on which ``a`` and ``b`` disagree, if any.

    A feature of the learned scorer; :func:`hard_mismatch` is the narrower
    subset that rejects outright.
    """
    if a.expression and b.expression and a.expression != b.expression:
        return "number" if a.numbers != b.numbers else "operator"
    if a.numbers and b.numbers and _numbers_differ(a, b):
        return "number"
    # Only near-identical texts are flagged on negation: with more words changed
    # the sentence is rephrased, a "not" often moves between clauses, and the
    # learned scorer (which sees the asymmetry as a feature) judges better.
    if bool(a.negation) != bool(b.negation) and content_difference(a, b) <= NEAR_IDENTICAL:
        return "negation"
    if _units_differ(a.units, b.units):
        return "unit"
    if unmatched_entities(a, b) and unmatched_entities(b, a):
        return "entity"
    return None


_NOT_CONTENT = STOPWORDS | _NEGATION | _NOT_ENTITIES | set(_UNITS) | set(_TIME_UNITS)
_NOT_CONTENT |= set(_WORD_VALUES) | set(_OPERATORS)


def _content_words(sig: TextSignature) -> set[str]:
    return {w for w in sig.tokens if w.isalpha() and len(w) > 1 and w not in _NOT_CONTENT}


def _one_edit(x: str, y: str) -> bool:
    """One slip (:func:`_one_slip`) or one letter replaced ("londen" / "london")."""
    if len(x) == len(y) and sum(p != q for p, q in zip(x, y, strict=True)) == 1:
        return True
    return _one_slip(x, y)


def _variant(word: str, others: set[str], lexicon: Lexicon) -> bool:
    """``word`` is another form of one of ``others``: an inflection, an alias, or a typo.

    Between two words written like names (:meth:`Lexicon.is_proper`) the rule is strict:
    only an inflection or demonym ending (:func:`same_stem`), or one edit where one of the
    two is rare in the reference corpus (a misspelling is, "iceland" / "ireland" are not),
    since "austria" / "australia" and "java" / "javascript" name other things. Other rare
    words vary more freely ("procrastinating" / "procrastination", "bullies" / "bully",
    "celebs" / "celebrities"): a shared beginning, one inside the other, or close spelling.
    """
    for other in others:
        if same_stem(word, other) or _ALIASES.get(word, word) == _ALIASES.get(other, other):
            return True
        if word in PLACES and other in PLACES:
            continue  # two known places one letter apart are two places ("iceland")
        if _proper(word, lexicon) and _proper(other, lexicon):
            if (
                min(len(word), len(other)) >= 5
                and _one_edit(word, other)
                and (lexicon.is_rare(word) or lexicon.is_rare(other))
            ):
                return True
            continue
        if word[:4] == other[:4] or word in other or other in word:
            return True
        first, second = sorted((word, other))
        if cydifflib.SequenceMatcher(None, first, second, autojunk=False).ratio() >= 0.8:
            return True
    return False


def swapped_name(a: TextSignature, b: TextSignature, lexicon: Lexicon) -> tuple[str, str] | None:
    """The two words when near-identical texts differ by one name-like word for another.

    Catches the entities that case does not mark ("weather in paris" / "weather in
    london", "translate hello to spanish" / "to german"): once shared words, inflections,
    spelling variants, aliases, units and function words are set aside, each text has
    exactly one word the other lacks, and both are written like names or are rare in the
    reference corpus (:meth:`Lexicon.names_a_thing`). Two common words swapped ("good
    joke" / "funny joke") are left to the scorer.
    """
    if content_difference(a, b) > NEAR_IDENTICAL:
        return None
    words_a, words_b = _content_words(a), _content_words(b)
    only_a, only_b = words_a - words_b, words_b - words_a
    left = [w for w in only_a if not _variant(w, only_b, lexicon)]
    right = [w for w in only_b if not _variant(w, only_a, lexicon)]
    if len(left) != 1 or len(right) != 1:
        return None
    if _names(left[0], lexicon) and _names(right[0], lexicon):
        return left[0], right[0]
    return None


# Words that ask the opposite of each other, or another one of a closed set of
# alternatives: near-identical texts that swap one for another ask for another answer
# ("sort in ascending order" / "in descending order", "rain today" / "rain tomorrow").
_ALTERNATIVES = (
    "today tomorrow yesterday tonight",
    "this next last previous current",
    "weekday weekend|weekdays weekends",
    "morning afternoon evening night",
    "monday tuesday wednesday thursday friday saturday sunday",
    "spring summer winter autumn",
    "daily weekly monthly yearly annually hourly",
    "horizontally vertically|horizontal vertical",
    "start end|begin end|beginning end|started ended|began ended|starts ends",
    "singular plural",
)
_OPPOSITE_PAIRS = frozenset(
    frozenset((x, y))
    for line in _ALTERNATIVES
    for group in line.split("|")
    for x in group.split()
    for y in group.split()
    if x != y
) | frozenset(
    frozenset(pair)
    for line in (
        "ascending descending|increase decrease|increasing decreasing|increases decreases",
        "increased decreased|maximum minimum|max min|maximize minimize|largest smallest",
        "larger smaller|large small|biggest smallest|bigger smaller|big small|highest lowest",
        "higher lower|high low|best worst|better worse|most least|more less|longest shortest",
        "longer shorter|long short|fastest slowest|faster slower|fast slow|cheapest dearest",
        "oldest youngest|older younger|old young|hottest coldest|hotter colder|hot cold",
        "buy sell|buying selling|import export|importing exporting|upload download",
        "uploading downloading|encrypt decrypt|encode decode|encoding decoding|compress decompress",
        "install uninstall|enable disable|upgrade downgrade|upgrading downgrading|open close",
        "opening closing|start stop|gain lose|gaining losing|win lose|winning losing|add remove",
        "advantages disadvantages|advantage disadvantage|pros cons|benefits drawbacks",
        "strengths weaknesses|positive negative|true false|raw cooked|before after|first last",
        "north south|east west|northern southern|eastern western|left right|inner outer",
        "uppercase lowercase|upper lower|input output|inputs outputs|push pull|debit credit",
        "sunrise sunset|male female|men women|boys girls|legal illegal|safe unsafe",
        "possible impossible|healthy unhealthy|profit loss|rich poor|love hate|entry exit",
        "inside outside|internal external|above below|over under|forward backward|plus minus",
        "login logout|signin signout|send receive|sending receiving",
        "sent received|read write|reading writing|show hide|expand collapse|get set",
        "join split|public private|client server|frontend backend|sync async",
        "cheapest expensive|cheap expensive|cheaper expensive|hard soft|key value|keys values",
    )
    for pair in (p.split() for p in line.split("|"))
)
# Words whose two sides carry the meaning ("from A to B", "A rather than B").
_DIRECTIONAL = frozenset(("to", "into", "onto", "from", "than", "towards", "toward"))


# Prefixes that undo or negate a word ("zip" / "unzip", "serialize" / "deserialize");
# bases of three letters only with "un" ("unset", "unpin": "input" is not "put" undone).
_UNDOING = ("un", "de", "dis", "non", "im", "in", "ir", "il")
# Particles that reverse the verb before them ("sign in" / "sign out", "turn on" / "turn
# off"): opposites only after the same verb, since on their own they are everywhere.
_PARTICLES = frozenset(frozenset(p.split()) for p in ("on off", "in out", "up down"))


def swapped_opposite(a: TextSignature, b: TextSignature) -> tuple[str, str] | None:
    """The two words when near-identical texts differ by a word and its opposite: a
    listed pair or two of a closed set (:data:`_OPPOSITE_PAIRS`), a word and the same
    word with an undoing prefix, or reversing particles after the same verb."""
    if content_difference(a, b) > NEAR_IDENTICAL:
        return None
    only_a = set(a.tokens) - set(b.tokens)
    only_b = set(b.tokens) - set(a.tokens)
    for x in sorted(only_a):
        for y in sorted(only_b):
            if frozenset((x, y)) in _OPPOSITE_PAIRS or _undoes(x, y) or _undoes(y, x):
                return x, y
            if frozenset((x, y)) in _PARTICLES and _after(a.tokens, x) & _after(b.tokens, y):
                return x, y
    return None


def _undoes(word: str, base: str) -> bool:
    if len(base) == 3:
        return word == "un" + base
    return len(base) >= 4 and any(word == prefix + base for prefix in _UNDOING)


def _after(tokens: tuple[str, ...], particle: str) -> set[str]:
    """The content words right before each ``particle``."""
    return {
        tokens[i - 1]
        for i, w in enumerate(tokens)
        if w == particle and i > 0 and tokens[i - 1] not in STOPWORDS
    }


# Question words that ask for another kind of answer: a person, a time, a place, a cause.
_ASKING = {"who": "person", "whom": "person", "whose": "person", "when": "time",
           "where": "place", "why": "cause"}  # fmt: skip


def swapped_question(a: TextSignature, b: TextSignature) -> bool:
    """Texts about the same things that open with question words asking for another
    kind of answer ("Who wrote Hamlet?" / "When was Hamlet written?"). "What", "how"
    and "which" are left out: rewordings trade them freely ("What is the best way to
    ..." / "How can I ...")."""
    # Content words alone: the question word drags its auxiliary with it ("who wrote" /
    # "when was ... written"), so the full word difference of short texts is large.
    content_a, content_b = _content_words(a), _content_words(b)
    if len(content_a ^ content_b) > 2:
        return False
    kinds_a, kinds_b = _opening_kinds(a.tokens), _opening_kinds(b.tokens)
    return bool(kinds_a) and bool(kinds_b) and not kinds_a & kinds_b


def _opening_kinds(tokens: tuple[str, ...]) -> set[str]:
    """What the words opening a question ask for ("when and by whom" asks two things).
    Only the opening: inside a question "when" and "where" are mostly conjunctions
    ("what does it mean when ...")."""
    kinds: set[str] = set()
    for word in tokens:
        if word in _ASKING:
            kinds.add(_ASKING[word])
        elif word not in ("and", "or", "by", ","):
            break
    return kinds


def swapped_order(a: TextSignature, b: TextSignature) -> bool:
    """The same words in another order around "to", "from", "than" ...: the direction
    of what is asked is reversed ("flights from New York to London" / "from London to
    New York", "translate from English to French" / "from French to English"). Other
    reorderings ("X or Y" / "Y or X", a clause moved to the front) are not this."""
    words_a = _symmetric_pairs_sorted([w for w in a.tokens if w.isalnum()])
    words_b = _symmetric_pairs_sorted([w for w in b.tokens if w.isalnum()])
    if words_a == words_b or sorted(words_a) != sorted(words_b):
        return False
    for word in _DIRECTIONAL.intersection(words_a):
        around_a, around_b = _around(words_a, word), _around(words_b, word)
        if around_a and around_b and around_a != around_b:
            return True
    return False


def _symmetric_pairs_sorted(words: list[str]) -> list[str]:
    """``words`` with the two sides of each "A or B", "A and B", "A vs B" in one order:
    "better to lease or buy" and "better to buy or lease" ask one thing."""
    out = list(words)
    for i in range(1, len(out) - 1):
        if out[i] in ("or", "and", "vs", "versus") and out[i - 1] > out[i + 1]:
            out[i - 1], out[i + 1] = out[i + 1], out[i - 1]
    return out


def _around(words: list[str], marker: str) -> list[tuple[str, str]]:
    """Each ``marker`` that stands between two content words: the word right before it,
    and the first content word among the two after it ("to *an* int", "than *to* buy").
    Only neighbours count ("how to convert" has none before, wherever the clause
    stands), and a marker without both ("when do we use for and *to*") is no direction."""

    def content(seq: list[str]) -> str:
        return next((w for w in seq if w not in STOPWORDS), "")

    pairs = (
        (content(words[i - 1 : i]), content(words[i + 1 : i + 3]))
        for i, w in enumerate(words)
        if w == marker
    )
    return sorted(p for p in pairs if p[0] and p[1])


# The vetoes read the bundled place names (cache.places) as names whatever the reference
# corpus says; the scorer's features keep reading the corpus alone, as when it was fitted.
def _proper(word: str, lexicon: Lexicon) -> bool:
    return word in PLACES or lexicon.is_proper(word)


def _names(word: str, lexicon: Lexicon) -> bool:
    return word in PLACES or lexicon.names_a_thing(word)


def hard_mismatch(a: TextSignature, b: TextSignature, lexicon: Lexicon | None = None) -> str | None:
    """The answer-changing disagreement that rejects a pair whatever the scorer says.

    Arithmetic, units and negation always; a different number or named
    entity only when the texts are otherwise near-identical. In rephrased
    texts those two are often the same thing said twice ("iPhone 6" and "the
    6th iPhone", "Trump" and "the US president"), so there the learned scorer,
    which reads :func:`mismatch_kind` as a feature, decides instead. With a
    ``lexicon``, near-identical texts that swap one name-like word for another
    are an entity mismatch too, capitalised or not (:func:`swapped_name`).
    Near-identical texts that swap a word for its opposite (:func:`swapped_opposite`),
    ask for another kind of answer (:func:`swapped_question`) or reverse a direction
    (:func:`swapped_order`) are refused as well; none is a scorer feature, so the
    fitted scorer reads what it was fitted on.
    """
    kind = mismatch_kind(a, b)
    if kind is None:
        if lexicon is not None and swapped_name(a, b, lexicon):
            return "entity"
        if swapped_opposite(a, b):
            return "opposite"
        if swapped_question(a, b):
            return "question"
        return "order" if swapped_order(a, b) else None
    if kind not in ("number", "entity") or content_difference(a, b) <= NEAR_IDENTICAL:
        return kind
    if a.expression and b.expression and a.expression != b.expression:
        return kind  # arithmetic: another sum is never the same question
    # Negation needs near-identical texts too, so only a unit can still differ.
    return "unit" if kind == "number" and _units_differ(a.units, b.units) else None
