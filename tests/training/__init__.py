"""Tests of stylebox.training."""
