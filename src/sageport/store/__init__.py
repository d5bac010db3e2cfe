"""Persistence of the desired state: models, endpoint configs and endpoints."""

from sageport.store.sqlite import AlreadyExists, Record, Store

__all__ = ["AlreadyExists", "Record", "Store"]
