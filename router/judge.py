"""The sampled judge: was the small model's answer as good as the large model's?

With probability ``sample_rate``, a cache miss answered by the small model is
also sent to the large model in the background. A configurable agreement test
compares the two answers; the verdict (``small_ok``) updates the learned
utility of the in-context examples the small model was shown and becomes a
training record for ``cachegate router train``.

The client's answer is never waited on or changed: :meth:`Judge.offer` only
starts a task, and refuses (counted) when ``max_in_flight`` judge calls are
already running, so a slow large backend cannot pile up work. Off by default:
every judged request costs one large-model call.

Plain values and callables only: the proxy supplies how to ask the large model,
how to embed (for the ``embedding`` test), and where verdicts go.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from router.errors import JudgeUnavailable, RouterConfigError
from router.types import check_unit

log = logging.getLogger("cachegate.router.judge")

Method = Literal["exact", "normalised", "numeric", "embedding"]
METHODS: tuple[Method, ...] = ("exact", "normalised", "numeric", "embedding")
Vector = npt.NDArray[np.float32]


def _check_method(value: str) -> Method:
    for m in METHODS:
        if value == m:
            return m
    raise RouterConfigError(f"judge method must be one of {', '.join(METHODS)}, got {value!r}")


@dataclass(frozen=True)
class JudgeConfig:
    """How often and how the judge compares answers.

    ``method``: ``exact`` (identical text after trimming), ``normalised`` (the
    final answers agree after case, punctuation and whitespace are folded; the
    final answer is what follows "answer is"/"####"/"Answer:" or else the last
    line), ``numeric`` (the final numbers agree within ``numeric_tolerance``,
    relative), ``embedding`` (cosine of the two answers' vectors >=
    ``min_similarity``).
    """

    enabled: bool = False
    sample_rate: float = 0.0
    method: Method = "normalised"
    min_similarity: float = 0.9
    numeric_tolerance: float = 1e-6
    max_in_flight: int = 4
    timeout_s: float = 60.0
    #: JSONL file the verdicts are appended to, one ``router.read_records`` row each.
    records_path: Path | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample_rate", check_unit(self.sample_rate, "sample_rate"))
        object.__setattr__(self, "method", _check_method(self.method))
        sim = self.min_similarity
        if isinstance(sim, bool) or not isinstance(sim, int | float) or not -1.0 <= sim <= 1.0:
            raise RouterConfigError(f"min_similarity must be in [-1, 1], got {sim!r}")
        tol = self.numeric_tolerance
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0.0 <= tol < math.inf:
            raise RouterConfigError(f"numeric_tolerance must be a number >= 0, got {tol!r}")
        cap = self.max_in_flight
        if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            raise RouterConfigError(f"max_in_flight must be an integer >= 1, got {cap!r}")
        t = self.timeout_s
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 < t < math.inf:
            raise RouterConfigError(f"timeout_s must be a number > 0, got {t!r}")
        if self.enabled and self.records_path is None:
            raise RouterConfigError(
                "records_path is required when the judge is enabled: its verdicts are "
                "training records for 'cachegate router train'"
            )
        if self.records_path is not None:
            object.__setattr__(self, "records_path", Path(self.records_path))


# -- agreement tests -----------------------------------------------------------------

_FINAL_MARKERS = re.compile(
    r"####|final answer\s*(?:is)?\s*:?|the answer is\s*:?|answer\s*:", re.IGNORECASE
)
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def final_answer(text: str) -> str:
    """The answer part of ``text``, folded: the line after its last answer marker
    ("####", "the answer is", "final answer", "answer:"), else its last non-empty
    line; lower case, accents, punctuation and extra spaces removed."""
    markers = list(_FINAL_MARKERS.finditer(text))
    if markers:
        tail = _first_line(text[markers[-1].end() :])
    else:
        lines = [line for line in text.splitlines() if line.strip()]
        tail = lines[-1] if lines else ""
    folded = unicodedata.normalize("NFKD", tail.lower())
    folded = _DECIMAL_POINT.sub("\x00", folded)  # keep "3.5" apart from "35"
    kept = "".join(
        ch if ch.isalnum() or ch == "\x00" else " "
        for ch in folded
        if not unicodedata.combining(ch)  # accents go, their letters stay
    )
    return " ".join(kept.split()).replace("\x00", ".")


def final_number(text: str) -> float | None:
    """The last number in ``text`` (thousands separators dropped), if any."""
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    try:
        return float(matches[-1].replace(",", ""))
    except ValueError:
        return None


def cosine(a: Vector, b: Vector) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


@dataclass(frozen=True)
class Verdict:
    """The judge's comparison of one pair of answers."""

    small_ok: bool
    #: 1/0 for the text tests, the cosine for ``embedding``.
    score: float
    method: Method


def compare(
    config: JudgeConfig,
    small: str,
    large: str,
    vectors: tuple[Vector, Vector] | None = None,
) -> Verdict:
    """Agreement of ``small`` with ``large`` under ``config.method``.

    ``vectors`` (the two answers embedded) is required by ``embedding`` only.
    """
    method = config.method
    if method == "exact":
        same = small.strip() == large.strip()
        return Verdict(same, float(same), method)
    if method == "normalised":
        a, b = final_answer(small), final_answer(large)
        same = bool(a) and a == b
        return Verdict(same, float(same), method)
    if method == "numeric":
        x, y = final_number(small), final_number(large)
        same = (
            x is not None
            and y is not None
            and abs(x - y) <= config.numeric_tolerance * max(1.0, abs(x), abs(y))
        )
        return Verdict(same, float(same), method)
    if vectors is None:
        raise RouterConfigError("the embedding judge needs the two answers' vectors")
    sim = cosine(*vectors)
    return Verdict(sim >= config.min_similarity, sim, method)


# -- the judge ------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeCase:
    """One small-model answer to judge, with what the verdict will update."""

    tenant: str
    prompt: str
    small_answer: str
    category: str = "general"
    prompt_tokens: int | None = None
    #: Entry ids of the in-context examples the small model was shown.
    example_ids: tuple[str, ...] = ()
    neighbour_similarities: tuple[float, ...] = ()
    #: False where the tenant forbids keeping prompt text: no training record then.
    keep_prompt: bool = True


@dataclass(frozen=True)
class JudgeOutcome:
    case: JudgeCase
    verdict: Verdict
    large_answer: str


class VerdictSink(Protocol):
    """Where verdicts go (utilities of the examples, training records)."""

    async def __call__(self, outcome: JudgeOutcome) -> None: ...


@dataclass
class JudgeCounts:
    """What the judge did since start; exported as metrics by the proxy."""

    offered: int = 0
    sampled: int = 0
    capped: int = 0  # sampled but refused: max_in_flight calls were running
    shed: int = 0  # sampled but not sent: the large tier was overloaded or down
    agreed: int = 0
    disagreed: int = 0
    failed: int = 0  # the large model or embedder failed, or the call timed out
    records: int = 0  # training records written


AskLarge = Callable[[], Awaitable[str]]
Embed = Callable[[Sequence[str]], Awaitable[npt.NDArray[np.float32]]]


@dataclass
class Judge:
    """Samples small-model answers and judges them against the large model in the
    background, at most ``config.max_in_flight`` at a time."""

    config: JudgeConfig
    sinks: list[VerdictSink] = field(default_factory=list)
    embed: Embed | None = None
    clock: Callable[[], float] = time.time
    counts: JudgeCounts = field(default_factory=JudgeCounts)

    def __post_init__(self) -> None:
        if self.config.method == "embedding" and self.embed is None:
            raise RouterConfigError("the embedding judge needs an embedder")
        self._rng = random.Random(self.config.seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def wants(self) -> bool:
        """Whether to judge the next small answer (a coin flip at ``sample_rate``);
        call it before building the case so unsampled requests cost nothing."""
        if not self.config.enabled or self.config.sample_rate <= 0.0:
            return False
        self.counts.offered += 1
        return self._rng.random() < self.config.sample_rate

    def offer(self, case: JudgeCase, ask_large: AskLarge) -> bool:
        """Starts judging ``case`` in the background (after :meth:`wants` said yes).
        Returns False, counted, when ``max_in_flight`` judgements are running."""
        self.counts.sampled += 1
        if len(self._tasks) >= self.config.max_in_flight:
            self.counts.capped += 1
            return False
        task = asyncio.create_task(self._judge(case, ask_large))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def drain(self) -> None:
        """Waits for the running judgements (tests, graceful shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancels running judgements: they are best effort and must not hold a shutdown."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _judge(self, case: JudgeCase, ask_large: AskLarge) -> None:
        try:
            large = await asyncio.wait_for(ask_large(), self.config.timeout_s)
            vectors = None
            if self.config.method == "embedding":
                assert self.embed is not None  # checked in __post_init__
                both = await self.embed([case.small_answer, large])
                vectors = (both[0], both[1])
        except (JudgeUnavailable, TimeoutError) as exc:
            self.counts.failed += 1
            log.info("judge call failed: %s", exc or type(exc).__name__)
            return
        verdict = compare(self.config, case.small_answer, large, vectors)
        if verdict.small_ok:
            self.counts.agreed += 1
        else:
            self.counts.disagreed += 1
        outcome = JudgeOutcome(case, verdict, large)
        for sink in self.sinks:
            await sink(outcome)
        await self._write_record(outcome)

    async def _write_record(self, outcome: JudgeOutcome) -> None:
        path = self.config.records_path
        if path is None or not outcome.case.keep_prompt:
            return
        line = json.dumps(training_record(outcome, self.clock())) + "\n"
        async with self._write_lock:  # whole lines, in order, from one replica
            try:
                await asyncio.to_thread(_append, path, line)
            except OSError as exc:
                log.warning("judge record not written to %s: %s", path, exc)
                return
        self.counts.records += 1


def training_record(outcome: JudgeOutcome, at: float) -> dict[str, object]:
    """A ``router.read_records`` row: the small model's outcome as judged. The large
    model is the judge's reference, not graded itself, so ``large_ok`` is left
    unknown (the trainer fills it with that tier's mean)."""
    c, v = outcome.case, outcome.verdict
    return {
        "prompt": c.prompt,
        "small_ok": v.small_ok,
        "large_ok": None,
        "category": c.category,
        "prompt_tokens": c.prompt_tokens,
        "neighbour_similarities": list(c.neighbour_similarities),
        "source": "judge",
        "judge_method": v.method,
        "judge_score": round(v.score, 6),
        "examples": list(c.example_ids),
        "at": at,
    }


def _append(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(line)
