"""Tests of stylebox.service."""
