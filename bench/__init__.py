"""Benchmarks of orderlake (`make bench`); each writes its results to bench/results/."""
