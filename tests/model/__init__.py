"""Tests of stylebox.model."""
