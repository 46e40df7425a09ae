"""Tests of the deployment files: Dockerfile, compose, Kubernetes, nginx, CI."""
