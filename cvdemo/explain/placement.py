"""The input among the others: a new point on an analysis's 2D t-SNE map.

t-SNE has no ``transform``: its map is fitted to the points it was given. A new point is placed
where its nearest validation images are, weighted by inverse distance in the model's embedding
space (the space the map was made from): a kNN-weighted placement. It lands inside the cluster
it belongs to, or between clusters when it belongs to none, which is what the map should say;
unlike refitting, it never moves the points a student already looked at.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 5


@dataclass
class Placement:
    """Where the input falls on one model's 2D map, and its nearest validation images."""

    model: str
    point: np.ndarray                 # (2,) in the map's coordinates
    neighbours: list[int]             # positions in the analysis's evaluation images, nearest first
    distances: list[float]            # embedding distances to them

    def as_dict(self, paths: list[str] | None = None) -> dict:
        rows = [{"index": i, "distance": round(d, 5)} | ({"file": paths[i]} if paths else {})
                for i, d in zip(self.neighbours, self.distances)]
        return {"model": self.model, "x": float(self.point[0]), "y": float(self.point[1]), "nearest": rows}


def place(features: np.ndarray, map_index: np.ndarray, map_coords: np.ndarray, query: np.ndarray,
          model: str = "", k: int = NEIGHBOURS) -> Placement:
    """Place ``query`` (D,) on the map of ``features[map_index]`` (drawn at ``map_coords``).

    Neighbours are taken among the mapped points only, so each one is a dot on the map.
    """
    mapped = np.asarray(features)[np.asarray(map_index)]
    distances = np.linalg.norm(mapped - np.asarray(query)[None], axis=1)
    nearest = np.argsort(distances, kind="stable")[:k]
    weights = 1.0 / (distances[nearest] + 1e-6)
    point = (np.asarray(map_coords)[nearest] * weights[:, None]).sum(axis=0) / weights.sum()
    return Placement(model, point, [int(map_index[i]) for i in nearest], [float(distances[i]) for i in nearest])
