"""The hot path: routing an invocation to an instance and relaying its answer."""
