"""The built-in model server that runs inside each instance process.

An instance runs ``python -m sageport.runtime --model-dir DIR ...``. The
supervisor (``supervisor.py``) binds the socket, forks the workers
(``worker.py``) and starts listening once every worker has loaded the model.
Each worker imports the user's ``code/inference.py`` the way SageMaker's
framework containers do (``handlers.py``), decodes and encodes bodies with the
default codecs (``codecs.py``) and serves ``GET /ping`` and
``POST /invocations`` over HTTP/1.1 (``protocol.py``).

This package imports nothing from the rest of ``sageport``: it runs inside
instances, so it stays small and quick to import. Importing the package itself
loads no third-party module.
"""
