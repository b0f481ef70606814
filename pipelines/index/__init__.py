"""A similarity index over a feature file, search in it, and exports for other tools."""

from pipelines.index._export import EXPORT_FORMATS, export
from pipelines.index._index import HNSW_EF_SEARCH, HNSW_M, INDEX_KINDS, RESCORE, build_index, search

__all__ = ["EXPORT_FORMATS", "HNSW_EF_SEARCH", "HNSW_M", "INDEX_KINDS", "RESCORE", "build_index", "export", "search"]
