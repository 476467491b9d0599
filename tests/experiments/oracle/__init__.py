"""Tests of spot.experiments.oracle, one module per module of the package."""
