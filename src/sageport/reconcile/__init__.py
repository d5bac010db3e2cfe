"""Converge running instances to the desired state in the store.

``endpoints`` decides what each endpoint should run from its status;
``fleet`` starts, supervises, resizes and stops the instances of a deployment.
"""

from sageport.reconcile.endpoints import Reconciler

__all__ = ["Reconciler"]
