"""The botocore service models that drive validation and serialisation.

botocore ships the SageMaker models as JSON inside its package, so loading them
needs no network access. Each model is loaded once per process, at server start
or on first use.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session


@functools.cache
def _session() -> Any:
    return botocore.session.get_session()


@functools.cache
def control_plane_model() -> Any:
    """Return the ``sagemaker`` service model (AWS JSON 1.1, ``botocore.model.ServiceModel``)."""
    return _session().get_service_model("sagemaker")


@functools.cache
def runtime_model() -> Any:
    """Return the ``sagemaker-runtime`` service model (REST-JSON)."""
    return _session().get_service_model("sagemaker-runtime")


@functools.cache
def control_plane_operation_names() -> frozenset[str]:
    """Return the names of every operation in the control-plane model."""
    return frozenset(control_plane_model().operation_names)
