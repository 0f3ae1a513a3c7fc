"""Cheap text signals that sentence embeddings miss.

A MiniLM vector says what a prompt is *about*, but it blurs what decides a
category for real chat prompts: a code block pasted inside an instruction, the
numbers and operators of a word problem, a LaTeX formula, a word about *now*
("today", "latest", "current price"). The embedder also sees only the first
256 tokens, while long prompts often put the question last. So the signals
read the head and the tail of the raw text (bounded: a 100 kB prompt costs
what a 2 kB one does) and return evidence per built-in category in logit
units, which the classifier adds to the head's log-probabilities.

Speed matters (the budget for a whole ``classify`` is 0.5 ms): the text is
lower-cased and split into word tokens once; vocabularies are set lookups,
phrases are ``str.count`` calls, and only a few short regexes run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Long prompts: read the start (instructions, the code) and the end (the question).
HEAD_CHARS = 1200
TAIL_CHARS = 600

_TOKEN = re.compile(r"[a-z0-9_+#']+")
_OPTIONS = re.compile(r"\n\(?A[.):]\s")


@dataclass(frozen=True)
class TextView:
    """A prompt prepared once for all signals and hints."""

    full: str
    text: str  # the window: head + tail of ``full``
    stem: str  # ``text`` without multiple-choice options (their numbers are not the problem's)
    lower: str
    tokens: tuple[str, ...]
    vocab: frozenset[str]

    @classmethod
    def of(cls, text: str) -> TextView:
        window = text
        if len(text) > HEAD_CHARS + TAIL_CHARS:
            window = text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]
        lower = window.lower()
        tokens = tuple(_TOKEN.findall(lower))
        options = _OPTIONS.search(window)
        stem = window[: options.start()] if options else window
        return cls(text, window, stem, lower, tokens, frozenset(tokens))

    def count_phrases(self, phrases: tuple[str, ...]) -> int:
        return sum(1 for p in phrases if p in self.lower)

    def count_words(self, words: frozenset[str]) -> int:
        return len(self.vocab & words)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# -- code -------------------------------------------------------------------------------

_CODE_LINE = re.compile(
    r"^[ \t]*(?:def |class \w|import \w|from \S+ import|return\b|elif |except\b|try:|"
    r"for \w+ in |while |function\b|const |let |var |public |private |static |#include|"
    r"using |package |fn |func |impl |select |insert into|create table|console\.|print\(|"
    r"@\w|//|/\*|<\w+[ >/]|\$ |sudo |pip |npm |git )|[;{}][ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
_TRACE = (
    "traceback (most recent call last)",
    "error:",
    "exception:",
    "exception in thread",
    "segmentation fault",
    "undefined reference",
    "npm err",
    "stack trace",
    "stacktrace",
    "compile error",
    "compilation error",
    "nullpointer",
    "null pointer",
    '", line ',
    "syntaxerror",
    "typeerror",
    "valueerror",
    "keyerror",
    "attributeerror",
    "importerror",
)
_SYNTAX = ("`", "()", "==", "!=", "=>", "->", "::", "+=", "&&", "||", "</", "/>", "[]", "{}")
# Naming a programming language is strong evidence; other tech words are weaker.
_LANGS = _words(
    "python javascript typescript java rust golang kotlin swift php ruby scala haskell c++ c# "
    "perl lua dart elixir clojure matlab sql postgresql mysql sqlite html css bash powershell "
    "react vue angular django flask fastapi node nodejs pandas numpy pytorch tensorflow"
)
_TECH = _words(
    "postgres mongodb redis flexbox tailwind spring npm dataframe api apis endpoint endpoints "
    "backend frontend database databases query queries schema server microservices docker "
    "dockerfile kubernetes deploy deployment compile compiler debug debugging bug bugs runtime "
    "library framework repository repo commit git github regex json yaml xml http https async "
    "await thread threads multithreading script scripting code coding program programming "
    "programmer refactor implement implementation algorithm algorithms recursion recursive "
    "array arrays hashmap dict dictionary struct pointer pointers variable variables method "
    "methods function functions exception exceptions stdout stdin cli shell terminal linux "
    "unix gcc jvm webpack devops pipeline caching oauth jwt websocket graphql unittest pytest "
    "jest junit linter pip conda venv div css3 html5 ide vscode"
)

# -- math -------------------------------------------------------------------------------

_DIGIT = re.compile(r"\d")
_SNAKE = re.compile(r"[a-z0-9]_[a-z]")
_ARITH = re.compile(r"\d\s*(?:[-+*/×÷^x]|\*\*)\s*\(?-?\d")
_ARITH_WORDS = _words("times plus minus divided multiplied squared cubed power sqrt mod")
_LATEX = re.compile(r"\\(?:frac|sqrt|int|sum|prod|lim|cdot|times|pi|theta|infty|log|sin|cos)")
# Alternatives start with rare characters so the regex engine can skip ahead.
_EQUATION = re.compile(r"= ?-?\d|\^ ?\d|\([a-z]\) ?=|\d[a-z] ?[-+=]")
_NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
_MATH_VOCAB = _words(
    "solve equation equations integer integers derivative integral probability remainder "
    "polynomial divisible prime primes factorial logarithm quadratic perimeter radius diameter "
    "circumference hypotenuse triangle area volume average median variance deviation "
    "ratio percent percentage fraction fractions sum calculate compute evaluate "
    "simplify arithmetic multiply divide divided velocity acceleration matrix determinant "
    "modulo gcd lcm digit digits equals twice half total altogether remaining "
    "profit discount speed mph km cm inches dollars cents per proof prove theorem "
    "inequality exponent exponential function's sqrt"
)
_QUANT_Q = (
    "how many",
    "how much",
    "how long",
    "how far",
    "how old",
    "how fast",
    "what is the total",
    "what percent",
    "find the",
    "calculate",
    "compute",
    "determine the",
    "work out",
    "what fraction",
    "what is the value",
    "what is the probability",
    "what is the sum",
    "what is the area",
    "solve",
    "prove that",
    "show that",
    "evaluate",
)

# -- time -------------------------------------------------------------------------------

_NOW = _words(
    "today today's tonight tomorrow tomorrow's yesterday currently latest newest "
    "breaking upcoming nowadays trending recent recently"
)
_NOW_PHRASES = (
    "right now",
    "at the moment",
    "this week",
    "this weekend",
    "this morning",
    "this afternoon",
    "this evening",
    "this month",
    "this season",
    "this year",
    "last night",
    "most recent",
    "so far",
    "as of ",
    "up to date",
    "up-to-date",
    "these days",
    "real time",
    "real-time",
    "next week",
    "at present",
)
_VOLATILE = _words(
    "weather forecast rain raining snow snowing sunny storm hurricane temperature stock stocks shares nasdaq dow crypto bitcoin "
    "btc ethereum news headlines score scores standings traffic delayed delays election polls "
    "price prices rate rates version release released schedule exchange market markets "
    "restrictions trading congested"
)
_VOLATILE_PHRASES = (
    "what time is it",
    "what's the time",
    "what day is it",
    "what's the date",
    "what is the date",
    "who won",
    "who is winning",
    "who is leading",
    "exchange rate",
    "stock price",
    "share price",
    "market cap",
    "box office",
    "release date",
    "interest rate",
)


# -- exam-style headers ("The following are multiple choice questions about X.") --------

_SUBJECT = re.compile(
    r"\s*the following (?:is a |are )?(?:multiple[- ]choice )?questions? (?:\(with answers\) )?"
    r"about ([a-z _]+)"
)
_MATH_SUBJECTS = _words("algebra mathematics math maths statistics calculus geometry arithmetic")


@dataclass(frozen=True)
class Signals:
    """Evidence (0 to 6, in logit units) for the built-in categories."""

    code: float = 0.0
    math: float = 0.0
    time_sensitive: float = 0.0
    factual: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "code": self.code,
            "math": self.math,
            "time_sensitive": self.time_sensitive,
            "factual": self.factual,
        }


def subject_evidence(view: TextView) -> tuple[float, float]:
    """(math, factual) evidence from an exam header naming its subject: the data sets
    behind the default head file maths/statistics subjects under math, the rest under
    factual, whatever numbers the question holds."""
    match = _SUBJECT.match(view.lower)
    if not match:
        return 0.0, 0.0
    # "high school mathematics" -> its last word decides (mathematics, statistics,
    # algebra); "college physics" is the one physics subject filed under math.
    subject = match.group(1).replace("_", " ").split()
    is_math = bool(subject) and (
        subject[-1] in _MATH_SUBJECTS or subject[-2:] == ["college", "physics"]
    )
    return (3.0, 0.0) if is_math else (0.0, 2.0)


def code_evidence(view: TextView) -> float:
    fenced = "```" in view.full or "~~~" in view.full
    score = 4.0 if fenced else 0.0
    score += min(len(_CODE_LINE.findall(view.text)), 6) * 0.6
    if view.count_phrases(_TRACE):
        score += 2.0
    syntax = sum(1 for s in _SYNTAX if s in view.text) + len(_SNAKE.findall(view.lower))
    score += min(syntax, 5) * 0.3
    score += min(view.count_words(_LANGS), 3) * 1.0 + min(view.count_words(_TECH), 5) * 0.5
    if view.stem is not view.text and not fenced:
        score *= 0.5  # an exam question about programs is filed as factual
    return min(score, 6.0)


def math_evidence(view: TextView) -> float:
    arith = len(_ARITH.findall(view.stem))
    if not _DIGIT.search(view.stem):
        # No digits: only words (and LaTeX without numbers) can speak for math.
        score = min(len(_LATEX.findall(view.text)), 4) * 0.8
        return min(score + min(view.count_words(_MATH_VOCAB), 6) * 0.3, 6.0)
    if view.count_words(_ARITH_WORDS):
        arith += 1
    score = 0.0
    if arith:
        # A bare expression ("17*23", "what is 12 times 9") is math; inside a long
        # prompt an expression is weaker evidence (it may be code or a date range).
        score += 3.5 if len(view.tokens) <= 12 else 1.0 + 0.3 * min(arith, 5)
    score += min(len(_LATEX.findall(view.text)) + view.text.count("^{"), 4) * 0.8
    score += min(len(_EQUATION.findall(view.stem.lower())), 4) * 0.5
    quantities = [n for n in _NUMBER.findall(view.stem) if not _is_year(n)]
    if len(quantities) >= 2 and view.count_phrases(_QUANT_Q):
        # A word problem: quantities plus a question asking for one.
        score += 1.5 + 0.25 * min(len(quantities), 6)
    elif len(quantities) >= 3:
        score += 0.6
    score += min(view.count_words(_MATH_VOCAB), 6) * 0.3
    if view.stem is not view.text:
        # Exam questions with options: the head has seen thousands of them and knows
        # a chemistry calculation from an algebra one better than a number count does.
        score *= 0.25
    return min(score, 6.0)


def _is_year(number: str) -> bool:
    return len(number) == 4 and number[:2] in ("15", "16", "17", "18", "19", "20")


def time_evidence(view: TextView) -> float:
    now = min(view.count_words(_NOW) + view.count_phrases(_NOW_PHRASES), 3)
    # Volatile topics alone (prices, markets, rates) are everyday exam vocabulary too;
    # they count fully only next to a word about now.
    volatile = min(view.count_words(_VOLATILE) * 0.7, 2.1)
    if not now:
        volatile = min(volatile, 0.7)
    volatile += min(view.count_phrases(_VOLATILE_PHRASES), 2) * 1.0
    score = now * 1.0 + volatile
    if now and volatile:
        score += 1.5
    if len(view.tokens) > 40:
        # Narratives (a legal case, a patient history) mention "recently" and "this
        # year" in passing; questions about now are short.
        score *= max(0.3, 40 / len(view.tokens))
    return min(score, 6.0)


def compute_signals(text: str | TextView) -> Signals:
    """Evidence for code, math, time_sensitive (and factual, from exam headers)."""
    view = text if isinstance(text, TextView) else TextView.of(text)
    subject_math, subject_factual = subject_evidence(view)
    return Signals(
        code=code_evidence(view),
        math=min(math_evidence(view) + subject_math, 6.0),
        time_sensitive=time_evidence(view),
        factual=subject_factual,
    )
