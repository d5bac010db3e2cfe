"""How instances run: model data, the process backend and its supervision."""
