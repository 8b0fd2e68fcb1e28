"""Fixtures for the markets tests."""

from __future__ import annotations
