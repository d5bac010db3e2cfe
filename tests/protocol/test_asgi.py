"""The ASGI helpers shared by the API handlers."""

from __future__ import annotations

import uuid

from sageport.protocol.asgi import new_request_id


def test_request_id_is_version_4_uuid() -> None:
    for _ in range(1000):
        request_id = new_request_id()
        parsed = uuid.UUID(request_id)

        assert str(parsed) == request_id
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_request_ids_differ() -> None:
    ids = {new_request_id() for _ in range(1000)}

    assert len(ids) == 1000
