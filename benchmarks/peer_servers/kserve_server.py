"""Serve the benchmark's iris model with KServe's ModelServer (runs in the kserve venv).

    python kserve_server.py MODEL_JOBLIB HTTP_PORT GRPC_PORT

The model serves KServe's v1 protocol at POST /v1/models/iris:predict with
``{"instances": rows}``. Apart from the ports, the ModelServer keeps its defaults.
"""

from __future__ import annotations

import sys
from typing import Any

import joblib
import kserve  # type: ignore[import-not-found]
import numpy as np


class IrisModel(kserve.Model):  # type: ignore[misc]
    """The scikit-learn model behind KServe's Model interface."""

    def __init__(self, name: str, model_path: str) -> None:
        super().__init__(name)
        self.model_path = model_path
        self.model: Any = None

    def load(self) -> bool:
        self.model = joblib.load(self.model_path)
        self.ready = True
        return True

    def predict(self, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        rows = np.asarray(payload["instances"], dtype=np.float64)
        return {"predictions": self.model.predict(rows).tolist()}


def main() -> None:
    model_path, http_port, grpc_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    model = IrisModel("iris", model_path)
    model.load()
    server = kserve.ModelServer(http_port=http_port, grpc_port=grpc_port)
    server.start([model])


if __name__ == "__main__":
    main()
