"""Wire formats: botocore-driven validation, serialisation and error rendering.

The control plane speaks AWS JSON 1.1 (``awsjson``), the runtime speaks
REST-JSON (``restjson``). Both take their rules from the service models that
ship with botocore (``models``), so request checks and response shapes follow
the same definitions boto3 uses.
"""
