"""Train the iris classifier and package it as a SageMaker model archive.

Fits scikit-learn's LogisticRegression on the iris data set that ships with
scikit-learn, reports its accuracy on held-out flowers, and writes
``model.tar.gz`` with ``model.joblib`` at the top and ``code/inference.py``
beside it, the layout the SageMaker scikit-learn container expects. The run
is deterministic: with the same scikit-learn, joblib and NumPy versions, two
runs write the same archive, byte for byte.

    uv run python examples/sklearn-iris/train.py [--output PATH]
"""

from __future__ import annotations

import argparse
import gzip
import io
import tarfile
from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
# lbfgs converges in 82 iterations on this split (scikit-learn 1.9.1), close
# to its default cap of 100, so the cap is raised for other splits or versions.
MAX_ITER = 1000
SEED = 0


def train(model_path: Path) -> float:
    """Fit the classifier, save it to ``model_path`` and return its test accuracy."""
    iris = load_iris()
    species = iris.target_names[iris.target]
    features_train, features_test, species_train, species_test = train_test_split(
        iris.data, species, test_size=0.2, random_state=SEED, stratify=species
    )

    model = LogisticRegression(max_iter=MAX_ITER)
    model.fit(features_train, species_train)

    model_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_path)
    return float(model.score(features_test, species_test))


def package(model_path: Path, inference_path: Path, archive_path: Path) -> None:
    """Write ``archive_path`` with the model and ``code/inference.py``.

    File times, owners and the gzip header time are fixed so that the archive
    depends only on its contents.
    """
    members = [("model.joblib", model_path), ("code/inference.py", inference_path)]
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        archive_path.open("wb") as file,
        gzip.GzipFile(filename="", mode="wb", fileobj=file, mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        archive.addfile(_directory_info("code"))
        for name, source in sorted(members):
            data = source.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))


def _directory_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=HERE / "model.tar.gz",
        help="path of the model archive to write (default: model.tar.gz next to this script). "
        "model.joblib goes to build/ beside it.",
    )
    args = parser.parse_args()
    archive_path: Path = args.output.resolve()
    model_path = archive_path.parent / "build" / "model.joblib"

    accuracy = train(model_path)
    package(model_path, HERE / "code" / "inference.py", archive_path)

    print(f"Test accuracy on 30 held-out flowers: {accuracy:.3f}")
    print(f"Wrote {archive_path} ({archive_path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
