"""Save the benchmark's iris model in MLflow's format (runs in the mlflow venv).

    python mlflow_save.py MODEL_JOBLIB OUTPUT_DIR

``mlflow models serve -m OUTPUT_DIR`` then serves POST /invocations with
``{"inputs": rows}``.
"""

from __future__ import annotations

import shutil
import sys

import joblib
import mlflow.sklearn  # type: ignore[import-not-found]


def main() -> None:
    model_path, output_dir = sys.argv[1], sys.argv[2]
    shutil.rmtree(output_dir, ignore_errors=True)
    mlflow.sklearn.save_model(joblib.load(model_path), output_dir)


if __name__ == "__main__":
    main()
