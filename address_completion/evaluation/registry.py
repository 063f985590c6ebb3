"""Every system kind by its ``kind:`` name, and :func:`create_system`, which builds one from its spec."""

from __future__ import annotations

from .baselines import PriorSystem, RulesSystem
from .paddle_system import PaddleSystem
from .remote_systems import OpenAISystem, PredictionsSystem
from .systems import EvalSettings, System, SystemSpec

KINDS: dict[str, type[System]] = {cls.KIND: cls for cls in (PaddleSystem, OpenAISystem, PredictionsSystem,
                                                              PriorSystem, RulesSystem)}
COMMON_KEYS = ("name", "kind", "limit")  # limit: this system answers only the first N test items (free decoding
# of a real model on CPU takes seconds per address; the cheap systems keep the whole test set)



def create_system(spec: SystemSpec, settings: EvalSettings) -> System:
    """The system ``spec`` describes (its kind already checked against :data:`KINDS`), not yet loaded."""
    return KINDS[spec.kind](spec, settings)
