"""Tests of spot.oracle, one module per module of the package."""
