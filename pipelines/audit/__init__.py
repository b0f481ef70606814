"""Auditing a feature file: near-duplicates, leaks, label issues, outliers, classes."""

from pipelines.audit._audit import audit, audit_files, leaks

__all__ = ["audit", "audit_files", "leaks"]
