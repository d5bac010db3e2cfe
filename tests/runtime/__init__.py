"""Tests of the built-in runtime that runs inside instances."""
