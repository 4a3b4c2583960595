"""Benchmark workloads shared by benchmarks/, the CI guard and `fhirhose bench`."""
