"""BrainClustering's Search mode: per query, a model from the ``w`` training patients whose preprocessed
primary source (the T1) is nearest in mean squared difference over the whole volume. Each training
patient's preprocessed primary is kept, cropped to its box, so a query never re-reads the training set."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from common.cores import usable_cores
from datamodules.preprocessing import bounding_box

#: Search keeps each training patient's primary source (in [0, 1]) as this many 16-bit levels: half
#: the memory of float32.
SEARCH_LEVELS = 65535


@numba.njit(cache=True, nogil=True)
def _box_sums(query, start, crop, scale):  # pragma: no cover - compiled
    """Over the box of ``crop`` placed at ``start`` in ``query``: (sum of query^2, sum of
    (query - crop * scale)^2), in float64."""
    inside_square, difference_square = 0.0, 0.0
    size_x, size_y, size_z = crop.shape
    for x in range(size_x):
        for y in range(size_y):
            for z in range(size_z):
                q = np.float64(query[start[0] + x, start[1] + y, start[2] + z])
                d = q - crop[x, y, z] * scale
                inside_square += q * q
                difference_square += d * d
    return inside_square, difference_square


class SearchIndex:
    """The training patients' preprocessed primaries (in [0, 1]), each cropped to its box and kept as
    16-bit levels (:data:`SEARCH_LEVELS`), in training order."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.boxes: list[list[tuple[int, int]]] = []
        self.crops: list[np.ndarray] = []

    def add(self, case_id: str, primary: np.ndarray) -> None:
        """Keep one training patient's preprocessed primary volume (0 outside the brain)."""
        if self.shape is not None and primary.shape != self.shape:
            raise ValueError(
                f"case {case_id}: Search mode needs one volume shape, got {primary.shape} and {self.shape}"
            )
        self.shape = primary.shape
        box = bounding_box(primary)
        self.boxes.append([(s.start, s.stop) for s in box])
        self.crops.append(np.rint(primary[box].astype(np.float64) * SEARCH_LEVELS).astype(np.uint16))

    def distances(self, t1: np.ndarray) -> np.ndarray:
        """Mean squared difference of a preprocessed query primary to each training patient's, over the
        whole volume, background included (the kept crops are zero outside their box). Each kept voxel
        is off by at most half a 16-bit level, so a distance d by at most sqrt(d) / 65535 + 1e-10."""
        if tuple(t1.shape) != tuple(self.shape):
            raise ValueError(f"Search mode: query shape {t1.shape} differs from the training shape {tuple(self.shape)}")
        query = np.ascontiguousarray(t1, dtype=np.float32)
        total_square = float(np.square(query, dtype=np.float64).sum())

        def distance(bounds: np.ndarray, crop: np.ndarray) -> float:
            scale = 1.0 / SEARCH_LEVELS if crop.dtype == np.uint16 else 1.0  # float32: a model saved before
            inside_square, difference_square = _box_sums(query, bounds[:, 0], crop, scale)
            return (total_square - inside_square + difference_square) / query.size

        with ThreadPoolExecutor(usable_cores()) as pool:  # the compiled sums release the GIL
            return np.array(list(pool.map(distance, np.array(self.boxes, dtype=np.int64), self.crops)))

    def nearest(self, t1: np.ndarray, w: int) -> np.ndarray:
        """Indices of the ``w`` nearest training patients (ties broken by training order)."""
        return np.argsort(self.distances(t1), kind="stable")[:w]

    def state(self) -> dict[str, np.ndarray]:
        arrays = {"search_shape": np.array(self.shape), "search_boxes": np.array(self.boxes, dtype=np.int64)}
        return arrays | {f"search_t1_{i:05d}": crop for i, crop in enumerate(self.crops)}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], patients: int) -> SearchIndex:
        index = cls()
        index.shape = tuple(int(s) for s in arrays["search_shape"])
        index.boxes = arrays["search_boxes"].tolist()
        index.crops = [arrays[f"search_t1_{i:05d}"] for i in range(patients)]
        return index
