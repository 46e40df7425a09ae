"""Tests of the tools and the CLI entry point (stylebox/)."""
