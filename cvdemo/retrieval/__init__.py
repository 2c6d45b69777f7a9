"""Image retrieval: extractors by name, exact (numpy), FAISS or Milvus search, an incremental
on-disk index, the searchable library with its additions, and precision@k / mAP metrics.

The modules, bottom up: ``extractors`` and ``search`` know nothing of each other; ``milvus`` keeps
a copy of a ``snapshot`` in Milvus; ``snapshot`` searches one state by backend name; ``index``
joins them over a folder; ``library`` and ``metrics`` read the index; ``private`` keeps a
visitor's own additions beside it. Never imports Gradio.
"""
from .extractors import EXTRACTORS, PREFERENCE, Extractor, build_extractor, default_extractor
from .index import FeatureIndex, UpdateReport, scan_database
from .library import AddReport, Agreement, RetrievalAnswer, add_files, agreement, class_key, same_class, thumbnail
from .metrics import evaluate, labelled_queries
from .milvus import MilvusError, MilvusSearch, milvus_available
from .private import Addition, PrivateAdditions, merge
from .search import METRICS, FaissSearch, Hit, faiss_available, pairwise_distances, top_k
from .snapshot import BACKENDS, FAISS_MIN_VECTORS, Entry, Snapshot

__all__ = ["EXTRACTORS", "PREFERENCE", "Extractor", "build_extractor", "default_extractor", "Entry",
           "FeatureIndex", "Snapshot", "UpdateReport", "scan_database", "AddReport", "Agreement",
           "RetrievalAnswer", "add_files", "agreement", "class_key", "same_class", "thumbnail", "evaluate",
           "labelled_queries", "Addition", "PrivateAdditions", "merge", "MilvusError", "MilvusSearch", "milvus_available", "BACKENDS",
           "FAISS_MIN_VECTORS", "METRICS", "FaissSearch", "Hit", "faiss_available", "pairwise_distances", "top_k"]
