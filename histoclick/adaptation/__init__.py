"""Online adaptation: the mask decoder learns from the masks a user accepts while annotating.

:class:`Adapter` (the engine, :mod:`.engine`), :func:`evaluate_adaptive` (the adaptive
evaluation protocol, :mod:`.protocol`), and saving/loading next to a GeoJSON or in a QuPath
project (:mod:`.store`).
"""

from .engine import ADAPT_SCENARIOS, AdaptationStatus, AdaptConfig, Adapter, AdaptiveSession, Pair
from .replay import ReplayScore, replay_score
from .store import AdaptationFiles, adaptation_files

__all__ = [
    "ADAPT_SCENARIOS",
    "AdaptConfig",
    "AdaptationFiles",
    "AdaptationStatus",
    "Adapter",
    "AdaptiveSession",
    "Pair",
    "ReplayScore",
    "adaptation_files",
    "replay_score",
]
