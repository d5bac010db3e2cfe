"""Persistence of the desired state: models, endpoint configs and endpoints."""

from sageport.store.sqlite import AlreadyExists, Record, Store, now

__all__ = ["AlreadyExists", "Record", "Store", "now"]
