"""Helpers shared by the tests (tests/) and the benchmarks (bench/): plain functions and classes,
no fixtures (the fixtures live in the tests' conftest.py files). The application never imports
this package."""
