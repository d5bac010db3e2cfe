"""Persistence of the desired state (models, endpoint configs, endpoints) and the async queue."""

from sageport.store.sqlite import AlreadyExists, AsyncInvocationRow, Record, Store, now

__all__ = ["AlreadyExists", "AsyncInvocationRow", "Record", "Store", "now"]
