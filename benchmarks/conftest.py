"""Keep pytest out of the benchmarks: they start servers and run for minutes."""

collect_ignore_glob = ["*.py"]
