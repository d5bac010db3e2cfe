"""The benchmark's iris model as a BentoML service (runs in the bentoml venv).

    SAGEPORT_BENCH_MODEL=MODEL_JOBLIB bentoml serve bentoml_service:Iris --port PORT

The service serves POST /predict with ``{"rows": rows}``. The model path comes
from the environment because BentoML imports this module itself.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml  # type: ignore[import-not-found]
import joblib
import numpy as np


@bentoml.service(workers=1)
class Iris:
    """Predict iris species from rows of four measurements."""

    def __init__(self) -> None:
        self.model: Any = joblib.load(os.environ["SAGEPORT_BENCH_MODEL"])

    @bentoml.api  # type: ignore[untyped-decorator]
    def predict(self, rows: list[list[float]]) -> list[str]:
        labels: list[str] = self.model.predict(np.asarray(rows, dtype=np.float64)).tolist()
        return labels
