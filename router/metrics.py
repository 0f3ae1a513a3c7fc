"""RouteLLM's routing quality measures: PGR curve, APGR, CPT.

Routing the lowest-scored requests to the large model first, the quality at a
large share ``x`` is the mean outcome when those go large and the rest small.
PGR(x) = (quality(x) - small-only quality) / (large-only - small-only);
APGR is the area under PGR over x in [0, 1]; CPT(p) is the smallest large
share with PGR >= p.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from router.errors import RouterDataError

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RoutingQuality:
    apgr: float
    cpt50: float
    cpt80: float


def pgr_curve(scores: npt.ArrayLike, small_ok: npt.ArrayLike, large_ok: npt.ArrayLike) -> Floats:
    """PGR after routing 0, 1, ..., n of the lowest-scored requests to large."""
    s = np.asarray(scores, dtype=np.float64)
    small = np.asarray(small_ok, dtype=np.float64)
    large = np.asarray(large_ok, dtype=np.float64)
    gap = large.mean() - small.mean()
    if s.size == 0 or gap <= 0:
        raise RouterDataError("PGR needs requests on which the large model does better overall")
    order = np.argsort(s, kind="stable")
    gains = np.concatenate([[0.0], np.cumsum((large - small)[order])]) / s.size
    return np.asarray(gains / gap, dtype=np.float64)


def routing_quality(
    scores: npt.ArrayLike, small_ok: npt.ArrayLike, large_ok: npt.ArrayLike
) -> RoutingQuality:
    pgr = pgr_curve(scores, small_ok, large_ok)
    x = np.linspace(0.0, 1.0, pgr.size)

    def cpt(level: float) -> float:
        reached = np.flatnonzero(pgr >= level)
        return float(x[reached[0]]) if reached.size else 1.0

    return RoutingQuality(apgr=float(np.trapezoid(pgr, x)), cpt50=cpt(0.5), cpt80=cpt(0.8))
