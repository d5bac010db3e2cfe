"""Inference code for the iris example, in the SageMaker scikit-learn container's shape.

The container imports this file from ``code/`` in the model archive and calls
``model_fn`` once with the directory the archive was unpacked into. Requests
then go through the default ``input_fn``, ``predict_fn`` and ``output_fn``:
a JSON array or CSV rows become a NumPy array, ``model.predict`` runs on it,
and the result is encoded as the Accept header asks, JSON by default. The
model was trained on species names, so predictions are names such as
"setosa" without any extra code here.
"""

from __future__ import annotations

import os
from typing import Any

import joblib


def model_fn(model_dir: str) -> Any:
    """Load the trained LogisticRegression from ``model_dir``."""
    return joblib.load(os.path.join(model_dir, "model.joblib"))
