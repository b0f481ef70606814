"""A similarity index over a feature file, and search in it with images or texts.

``build_index`` puts one layer's vectors, scaled to unit length, in a FAISS index of inner
products (cosine similarity): exact (flat) up to ``FLAT_UP_TO`` items, HNSW above (approximate,
far faster to query at that size). The folder holds ``index.faiss``, ``items.json`` (ids and
sources, in index order) and ``spec.json``, the feature spec of the indexed layer. ``search``
featurizes the queries with exactly that spec, through the cache, so a query is compared only
with vectors made the same way; a feature file of queries must match it.

Quantised (``--quantize``): int8 is FAISS's 8-bit scalar quantiser (per-dimension ranges trained
on the vectors, kept in ``index.faiss``), 4x smaller; binary keeps one bit per dimension (above
its median: 32x smaller) in a FAISS binary index, searches by Hamming distance and rescores the
``RESCORE`` x k nearest with the float query against their int8 codes, kept in ``rescore.npy`` and
read from disk (memory-mapped) only for the candidates: the searched index is 32x smaller than
float, the folder 3.6x (sentence-transformers' binary + int8 rescoring). Measured on TREC's MiniLM
vectors: Hamming order alone finds 0.64 of the float index's 10 nearest, rescoring the bits
themselves 0.74, rescoring the 100 nearest by their int8 codes 0.98 (BENCHMARKS.md, Quantised vectors).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from featurizer import Extractor, FeatureFile, FeatureSpec, FeaturizerError, ReadOptions, RunOptions
from featurizer.cache import (
    binary_calibration,
    check_quantization,
    dequantize,
    is_feature_file,
    pack_bits,
    quantize,
    read_info,
)
from featurizer.engine import inputs_for
from featurizer.inputs import texts_as_inputs
from featurizer.spec import check_compatible
from featurizer.storage import atomic_output, check_new_output, download, is_url, join, location, staging_dir
from pipelines.fit import choose_layers, read_xy
from pipelines.heads import unit_rows
from pipelines.models import spec_problem

RESCORE = 10  # binary: candidates per neighbour asked for, rescored with the float query (BENCHMARKS.md, Index)
FLAT_UP_TO = 1_000_000  # items; exact search stays fast to here, HNSW loses recall (BENCHMARKS.md, Index)
INDEX_KINDS = ("auto", "flat", "hnsw")
HNSW_M, HNSW_EF_SEARCH = 32, 128


def build_index(
    features: str | os.PathLike,
    output: str | os.PathLike,
    layer=None,
    kind: str = "auto",
    force: bool = False,
    quantization: str | None = None,
) -> dict:
    """Index the vectors of ``layer`` (default: the file's first) of ``features`` into the folder ``output``
    (as int8 or binary codes with ``quantization``)."""
    import faiss

    if kind not in INDEX_KINDS:
        raise FeaturizerError(f"--kind is one of {', '.join(INDEX_KINDS)}, not {kind!r}")
    if check_quantization(quantization) and kind == "hnsw":
        raise FeaturizerError("--quantize builds an exact index of the codes: leave --kind at flat or auto")
    output = check_new_output(output, force, folder=True, inputs=[features], kind="index")
    with FeatureFile(features) as f:
        layers = choose_layers(f.layers, layer)
        if layers == "auto" or len(layers) != 1:
            raise FeaturizerError("an index holds one layer: name it with --layer")
        X = unit_rows(read_xy(f, layers)[0]).astype(np.float32)
        ids, sources, spec = f.ids, f.sources, f.spec.select(layers)
    kind = ("flat" if len(X) <= FLAT_UP_TO or quantization else "hnsw") if kind == "auto" else kind
    meta = {"kind": kind, "items": len(X), "dim": int(X.shape[1]), "layer": layers[0], "quantization": quantization}
    if quantization == "binary":
        meta["thresholds"] = binary_calibration(X)["thresholds"]
        rescore_codes, meta["rescore"] = quantize(X, "int8")
        index = faiss.IndexBinaryFlat(_bits(X.shape[1]))
        index.add(pack_bits(X, np.asarray(meta["thresholds"], np.float32)))
    elif quantization == "int8":
        index = faiss.IndexScalarQuantizer(X.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        if len(X):
            index.train(np.ascontiguousarray(X))
        index.add(np.ascontiguousarray(X))
    elif kind == "flat":
        index = faiss.IndexFlatIP(X.shape[1])
        index.add(np.ascontiguousarray(X))
    else:
        index = faiss.IndexHNSWFlat(X.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = HNSW_EF_SEARCH
        index.add(np.ascontiguousarray(X))
    with atomic_output(output, kind="index") as tmp:
        tmp.mkdir()
        (faiss.write_index_binary if quantization == "binary" else faiss.write_index)(index, str(tmp / "index.faiss"))
        if quantization == "binary":
            np.save(tmp / "rescore.npy", rescore_codes)
        (tmp / "items.json").write_text(json.dumps({"ids": ids, "sources": sources}))
        (tmp / "spec.json").write_text(spec.to_json())
        (tmp / "index.json").write_text(json.dumps(meta))
    return meta


def _bits(dim: int) -> int:
    """The bits of a binary code of ``dim`` signs: FAISS counts whole bytes (packbits pads with zeros)."""
    return 8 * -(-dim // 8)


class RescoredBinaryIndex:
    """A FAISS binary index of bits (above each dimension's median) searched by Hamming distance, its
    ``RESCORE`` x k nearest rescored by the float query's inner product with their int8 codes
    (memory-mapped: only the candidates' rows are read)."""

    def __init__(self, index, dim: int, thresholds: list[float], rescore: np.ndarray, calibration: dict):
        self.index, self.d, self.ntotal = index, dim, index.ntotal
        self.thresholds = np.asarray(thresholds, np.float32)
        if self.thresholds.shape != (dim,) or rescore.shape != (index.ntotal, dim):
            raise ValueError(f"index.json and rescore.npy are not for {index.ntotal} {dim}-d vectors")
        self.rescore, self.calibration = rescore, calibration

    def search(self, Q: np.ndarray, k: int, rescore: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        candidates = min(self.ntotal, k * (rescore or RESCORE))
        _, rows = self.index.search(pack_bits(Q, self.thresholds), candidates)
        picked = np.maximum(rows, 0)
        order = np.unique(picked)  # each candidate row read once, in file order
        vectors = dequantize(np.asarray(self.rescore[order]), self.calibration)
        scores = np.einsum("qd,qcd->qc", Q, vectors[np.searchsorted(order, picked)])
        scores[rows < 0] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, 1), np.take_along_axis(rows, best, 1)


def load_index(folder: str | os.PathLike):
    """(FAISS index, ids, sources, spec) of an index folder (a binary one wrapped to rescore)."""
    import faiss

    if is_url(folder):  # in object storage: its files fetched to a local folder first
        with tempfile.TemporaryDirectory(dir=staging_dir()) as local:
            for name in ("index.faiss", "items.json", "spec.json", "index.json", "rescore.npy"):
                if not (location(folder) / name).exists():
                    if name in ("index.json", "rescore.npy"):  # older folders and float indexes have none
                        continue
                    raise FeaturizerError(f"{folder} is not an index folder (made by xfer index)")
                download(join(str(folder), name), Path(local) / name)
            return load_index(local)
    folder = Path(folder)
    if not (folder / "index.faiss").is_file():
        raise FeaturizerError(f"{folder} is not an index folder (made by xfer index)")
    damaged = f"{folder} is a damaged index folder"
    try:
        items = json.loads((folder / "items.json").read_text(encoding="utf-8"))
        spec_data = json.loads((folder / "spec.json").read_text(encoding="utf-8"))
        problem = spec_problem(spec_data)
        if problem:
            raise ValueError(f"spec.json: {problem}")
        spec = FeatureSpec.from_json(json.dumps(spec_data))
        meta = (
            json.loads((folder / "index.json").read_text(encoding="utf-8")) if (folder / "index.json").is_file() else {}
        )
        quantization = check_quantization(meta.get("quantization"))
    except FileNotFoundError as err:
        missing = Path(err.filename).name
        raise FeaturizerError(f"{damaged}: {missing} is missing; build it again with xfer index") from None
    except (ValueError, KeyError, TypeError, AttributeError, FeaturizerError) as err:  # not what xfer index writes
        raise FeaturizerError(f"{damaged} ({err}); build it again with xfer index") from None
    ids = items.get("ids") if isinstance(items, dict) else None
    sources = items.get("sources") if isinstance(items, dict) else None
    if not isinstance(ids, list) or not (sources is None or isinstance(sources, list)):
        raise FeaturizerError(f"{damaged}: items.json does not list the items' ids; build it again with xfer index")
    if len(spec.layers) != 1:
        raise FeaturizerError(f"{damaged}: spec.json names {len(spec.layers)} layers, not one")
    try:
        index = (faiss.read_index_binary if quantization == "binary" else faiss.read_index)(str(folder / "index.faiss"))
        if quantization == "binary":
            if not (folder / "rescore.npy").is_file():
                raise FeaturizerError(f"{damaged}: rescore.npy is missing; build it again with xfer index")
            rescore = np.load(folder / "rescore.npy", mmap_mode="r")
            index = RescoredBinaryIndex(
                index, int(meta["dim"]), meta["thresholds"], rescore, read_info(meta["rescore"])
            )
    except FeaturizerError:
        raise
    except Exception as err:  # FAISS raises RuntimeError with a C++ trace for a truncated or foreign file
        raise FeaturizerError(f"{damaged}: index.faiss cannot be read ({_first_line(err)})") from None
    if index.ntotal != len(ids) or (sources and len(sources) != len(ids)):
        raise FeaturizerError(
            f"{damaged}: index.faiss holds {index.ntotal} vectors but items.json names {len(ids)} items; "
            "build it again with xfer index"
        )
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    return index, ids, sources, spec


def _first_line(err: BaseException) -> str:
    """The message of a FAISS error without its C++ context lines."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    said = next((line.split("failed:", 1)[-1].strip() for line in lines if "failed" in line), None)
    return said or (lines[-1] if lines else type(err).__name__)


def query_vectors(spec: FeatureSpec, queries, texts: list[str], run: RunOptions | None, read: ReadOptions | None):
    """(query ids, unit vectors) of ``queries`` (paths: images, folders, tables, or feature files)
    and literal ``texts``, all made with ``spec``."""

    names, parts = [], []
    extractor = None
    try:
        for query in queries:
            if is_feature_file(query):
                with FeatureFile(query) as f:
                    check_compatible(spec, f.spec, str(query), "the index's features")
                    names += f.ids
                    parts.append(f.read(spec.layers[0]))
                continue
            extractor = extractor or Extractor(spec, run or RunOptions(progress=False))
            inputs = inputs_for(extractor, location(query), read)
            keys, _ = extractor.keys(inputs)
            extractor.ensure(inputs, keys, "fail")
            names += inputs.ids
            parts.append(extractor.vectors(spec.layers[0], keys))
        if texts:
            if spec.modality != "text":
                raise FeaturizerError("--text queries need an index of a text model's features")
            extractor = extractor or Extractor(spec, run or RunOptions(progress=False))
            inputs = texts_as_inputs(list(texts))
            keys, _ = extractor.keys(inputs)
            extractor.ensure(inputs, keys, "fail")
            names += list(texts)
            parts.append(extractor.vectors(spec.layers[0], keys))
    finally:
        if extractor is not None:
            extractor.compact()
    if not parts:
        raise FeaturizerError("no queries: give image or text files, folders, tables, feature files, or --text")
    return names, unit_rows(np.vstack(parts)).astype(np.float32)


def search(
    folder, queries=(), texts=(), k: int = 10, run=None, read=None, rescore: int | None = None
) -> list[tuple[str, int, str, str, float]]:
    """(query, rank, id, source, similarity) of the ``k`` nearest indexed items of each query
    (``rescore``: a binary index's candidates per neighbour, ``RESCORE`` by default)."""
    index, ids, sources, spec = load_index(folder)
    if index.ntotal == 0:
        raise FeaturizerError(f"{folder} is an empty index (built from a file of no items): there is nothing to search")
    names, Q = query_vectors(spec, list(queries), list(texts), run, read)
    if Q.shape[1] != index.d:
        raise FeaturizerError(
            f"{folder} holds {index.d}-d vectors but its spec makes {Q.shape[1]}-d queries: the index is damaged; "
            "build it again with xfer index"
        )
    wanted = min(k, index.ntotal)
    if isinstance(index, RescoredBinaryIndex):
        scores, rows = index.search(np.ascontiguousarray(Q), wanted, rescore)
    else:
        scores, rows = index.search(np.ascontiguousarray(Q), wanted)
    sources = sources or [""] * len(ids)
    return [
        (name, rank + 1, ids[r], sources[r], float(s))
        for name, row, score in zip(names, rows, scores)
        for rank, (r, s) in enumerate(zip(row, score))
        if r >= 0
    ]
