"""Fixtures for the scripts tests."""

from __future__ import annotations
