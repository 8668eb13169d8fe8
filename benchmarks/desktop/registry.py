"""The tables of what the desktop suite implements: setup steps, getters and metrics by
their OSWorld names.

Every other module of the suite imports this one, and this one imports none of them:
`setup` fills `SETUP_STEPS`, `evaluators` fills `GETTERS` and `METRICS` when they are
imported (the package's ``__init__`` imports both, so the tables are full whenever any
module of `benchmarks.desktop` is in use); `taskfile` and `validate` only read them.

Signatures: a setup step is ``fn(env, **parameters)``; a getter ``fn(env, config)``
returns the state to score; a metric ``fn(result, expected_or_rules, **options)`` returns
a float in [0, 1] (OSWorld's `desktop_env/evaluators` conventions).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SetupStepFn = Callable[..., None]
Getter = Callable[[Any, dict[str, Any]], Any]
Metric = Callable[..., float]

SETUP_STEPS: dict[str, SetupStepFn] = {}
GETTERS: dict[str, Getter] = {}
METRICS: dict[str, Metric] = {}


__all__ = ["GETTERS", "METRICS", "SETUP_STEPS", "Getter", "Metric", "SetupStepFn"]
