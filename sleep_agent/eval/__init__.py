"""Evaluation: data sets, questions and scoring shared by the demo, the benchmarks and the tests."""
