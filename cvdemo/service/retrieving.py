"""The retrieval half of the service: the database's feature index, searches, additions, and
what a rejected input looks like. A mixin of :class:`cvdemo.service.Service`, which owns the
state it reads (``database``, ``checkpoints``, the retrieval settings and lock)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import config
from ..checkpoints import CheckpointError
from ..images import ImageError
from ..retrieval.milvus import MilvusError
from .sets import SHIPPED, LooksLike


class Retrieval:
    """Retrieval methods over ``self._retrieval`` (created on first use)."""

    def retrieval_index(self):
        """The database's feature index (cvdemo.retrieval.FeatureIndex), created on first use."""
        from ..retrieval import FeatureIndex

        with self._retrieval_lock:
            if self._retrieval is None:
                self._retrieval = FeatureIndex(self.database, self.retrieval_extractor, self.checkpoints,
                                               backend=self.retrieval_backend, milvus_uri=self.milvus_uri)
            return self._retrieval

    def retrieve(self, source: Any, k: int = 4, name: str | None = None, owner: str | None = None):
        """The k database images nearest to ``source``, with ``owner``'s own additions among them
        -> retrieval.RetrievalAnswer. Raises ImageError."""
        from ..retrieval import RetrievalAnswer, merge

        index = self.retrieval_index()
        started = time.perf_counter()
        k = max(1, int(k))
        image, vector = index.query_features(source, name=name)
        hits = index.search_features(vector, k)
        if owner is not None:
            hits = merge(hits, self.private.hits(owner, vector, k), k)
        return RetrievalAnswer(hits, image, index.extractor_name, (time.perf_counter() - started) * 1000,
                               database=index.database, backend=index.snapshot.resolve(index.backend),
                               private=self.private.root)

    def retrieve_compared(self, source: Any, k: int = 4, set_id: str = SHIPPED, name: str | None = None,
                          owner: str | None = None):
        """``retrieve`` within the limits, with how the neighbours compare to the set's classifiers.

        Returns (RetrievalAnswer, retrieval.Agreement). Raises ValueError for a k out of bounds and
        ImageError for an input that cannot be searched; a classifier failure never costs the results.
        """
        from ..retrieval import agreement

        answer = self.retrieve(source, k=self.limits.k(k), name=name, owner=owner)
        try:
            result = self.classify(source, set_id or SHIPPED)
        except ImageError:
            return answer, agreement(answer)
        except Exception:  # noqa: BLE001 - no usable classifier must not cost the user the results
            return answer, agreement(answer, why_not="No classifier is loaded to compare with.")
        said = {n: a.label for n, a in result.models.items()}
        known = list(next(iter(result.models.values())).probabilities)
        return answer, agreement(answer, said, known)

    def thumbnail(self, path: Path, side: int = 160):
        """A database image reduced to fit ``side`` pixels, for showing (PIL). Raises ImageError."""
        from ..retrieval import thumbnail

        return thumbnail(Path(path), side)

    def add_to_database(self, files: list, label: str | None = None, owner: str | None = None):
        """Add image files -> AddReport. With an ``owner`` (a visitor's session) and shared
        additions off, they are that owner's alone (:meth:`additions`); otherwise they are copied
        into the database (never overwriting) and indexed now, for everyone."""
        from ..retrieval import add_files

        index = self.retrieval_index()
        known = {entry.sha256 for entry in index.ensure_fresh().entries}
        if owner is not None and not self.shared_additions:
            return self.private.add(owner, list(files), label, index.features_of, known)
        report = add_files(self.database, [Path(f) for f in files], label, known)
        if report.added:
            update = index.update()
            added = {str(path.relative_to(self.database).as_posix()) for path in report.added}
            for rel, reason in update.skipped:
                if rel in added:
                    report.skipped.append((Path(rel).name, reason))
        return report

    def additions(self, owner: str | None) -> list:
        """``owner``'s own additions (retrieval.Addition), oldest first."""
        return self.private.list(owner)

    def remove_addition(self, owner: str | None, addition_id: str) -> None:
        """Remove one of ``owner``'s additions; KeyError when there is none by that id."""
        if not self.private.remove(owner, addition_id):
            raise KeyError("That image is not among the ones you added (it may be removed already).")

    def database_info(self) -> dict:
        """Size, classes and extractor of the retrieval database (indexes it if needed)."""
        index = self.retrieval_index()
        snap = index.ensure_fresh()
        classes: dict[str, int] = {}
        for entry in snap.entries:
            classes[entry.label or "(none)"] = classes.get(entry.label or "(none)", 0) + 1
        return {"database": str(self.database), "images": len(snap), "classes": dict(sorted(classes.items())),
                "extractor": index.extractor_name, "extractor_key": snap.extractor_key,
                "skipped": [{"path": e.path, "reason": r} for e, r in snap.skipped]}

    def looks_like(self, image, k: int = config.LOOKS_LIKE_K) -> LooksLike | None:
        """The majority label of the ``k`` database images nearest to ``image`` (a PIL image or a
        preprocessed digit), or None when there is no database to ask or its extractor was not
        trained on all ten digits (another one would say little, and indexing with it costs
        seconds a visitor would wait for)."""
        from ..retrieval import RetrievalAnswer
        from ..retrieval.extractors import ALL_DIGITS

        try:
            index = self.retrieval_index()
            if index.extractor_name not in ALL_DIGITS:
                return None
            if isinstance(image, np.ndarray):
                hits = index.search_features(index.features_of(image[None])[0], k)
            else:
                hits = index.search(image, k)[1]
        except (ImageError, CheckpointError, MilvusError, FileNotFoundError, OSError):
            return None
        if not hits:
            return None
        answer = RetrievalAnswer(hits, None, index.extractor_name, 0.0, database=index.database)
        return LooksLike(answer.majority, answer)

