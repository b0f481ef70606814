"""A similarity index over a feature file, search in it, and exports for other tools."""

from pipelines.index._export import export
from pipelines.index._index import HNSW_EF_SEARCH, HNSW_M, build_index, search

__all__ = ["HNSW_EF_SEARCH", "HNSW_M", "build_index", "export", "search"]
