"""Fixtures for the worker tests."""

from __future__ import annotations
