"""The frozen encoder's tapped features of the training images, batch by batch.

The encoder is frozen and there is no augmentation, so its features are computed once
per training image and reused every epoch (the cache), unless `train.cache: off`
re-encodes every batch. The cache is kept in `train.cache_dtype` (float16 halves the
bytes; its error against float32 is stated in docs/REPRODUCTION.md) wherever it fits
(`train.cache: auto`): in GPU memory (no copy per step), in host memory, or in a
memory-mapped file in `train.cache_dir` (the run folder by default), preallocated after
a check that the disk has room. Images are decoded by DataLoader workers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cnc.data.dataset import AnomalyDataset, make_loader
from cnc.errors import SettingsError
from cnc.io import DiskFullError, disk_full_named, free_bytes
from cnc.model.backbone import FrozenCLIP, Taps
from cnc.runs import FEATURE_CACHE_PREFIX
from cnc.settings import TrainSettings

GPU_SHARE = 0.5  # of the free GPU memory the cache may take: training needs the rest
HOST_SHARE = 0.5  # of the available host memory
DTYPES = {"float16": torch.float16, "float32": torch.float32}
Amp = Callable[[], AbstractContextManager]


class FeatureSource:
    """Tapped encoder features of the training images, by index."""

    def taps(self, indices: torch.Tensor) -> Taps:
        raise NotImplementedError

    def epoch(self, order: torch.Tensor, batch_size: int) -> Iterator[Taps]:
        """The features of each batch of `order`, in that order."""
        for indices in order.split(batch_size):
            yield self.taps(indices)


class Reencode(FeatureSource):
    """Loads and encodes the images of every batch (what a cache avoids)."""

    def __init__(
        self, encoder: FrozenCLIP, dataset: AnomalyDataset, device: str, workers: int, amp: Amp
    ) -> None:
        self.encoder, self.dataset, self.device = encoder, dataset, device
        self.workers, self.amp = workers, amp

    def _encode(self, images: torch.Tensor) -> Taps:
        with self.amp():
            taps = self.encoder.encode_taps(images.to(self.device, non_blocking=True))
        return Taps(taps.cls.float(), taps.patches.float())

    def taps(self, indices: torch.Tensor) -> Taps:
        return self._encode(torch.stack([self.dataset[int(i)]["image"] for i in indices]))

    def epoch(self, order: torch.Tensor, batch_size: int) -> Iterator[Taps]:
        batches = [b.tolist() for b in order.split(batch_size)]
        loader = make_loader(self.dataset, self.workers, self.device, batch_sampler=batches)
        for batch in loader:
            yield self._encode(batch["image"])


def cache_bytes(encoder: FrozenCLIP, images: int, dtype: str) -> int:
    tokens = 1 + encoder.grid[0] * encoder.grid[1]  # the class token and the patches
    return images * 3 * tokens * encoder.width * DTYPES[dtype].itemsize


def _available_host_bytes() -> int:
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def placement(where: str, size: int, device: str) -> str:
    """Where a cache of `size` bytes goes for `train.cache` = `where`."""
    cuda = str(device).startswith("cuda")
    if where == "gpu" and not cuda:
        raise SettingsError(f"train.cache: gpu needs a CUDA device; this run is on {device}")
    if where != "auto":
        return where
    if cuda and size <= GPU_SHARE * torch.cuda.mem_get_info(torch.device(device))[0]:
        return "gpu"
    return "memory" if size <= HOST_SHARE * _available_host_bytes() else "disk"


class FeatureCache(FeatureSource):
    """All tapped features computed once; rows gathered per batch."""

    def __init__(
        self,
        cls: np.ndarray | torch.Tensor,
        patches: np.ndarray | torch.Tensor,
        device: str,
        where: str,
        cleanup: Path | None = None,
    ) -> None:
        self.cls, self.patches, self.device = cls, patches, device
        self.where, self.cleanup = where, cleanup

    @classmethod
    def build(
        cls,
        encoder: FrozenCLIP,
        dataset: AnomalyDataset,
        device: str,
        train: TrainSettings,
        run_dir: Path,
        workers: int = 0,
        amp: Amp = nullcontext,
        progress: bool = True,
    ) -> FeatureCache:
        n, dtype = len(dataset), DTYPES[train.cache_dtype]
        shape_cls = (n, 3, encoder.width)
        shape_patches = (n, 3, encoder.grid[0] * encoder.grid[1], encoder.width)
        size = cache_bytes(encoder, n, train.cache_dtype)
        where = placement(train.cache, size, device)
        cleanup = None
        if where == "disk":
            folder = Path(train.cache_dir or run_dir)
            cleanup = _disk_folder(folder, size)
            store_cls = _preallocated(cleanup / "cls.npy", shape_cls, train.cache_dtype)
            store_patches = _preallocated(cleanup / "patches.npy", shape_patches, train.cache_dtype)
        else:
            on = device if where == "gpu" else "cpu"
            store_cls = torch.empty(shape_cls, dtype=dtype, device=on)
            store_patches = torch.empty(shape_patches, dtype=dtype, device=on)
        loader = make_loader(dataset, workers, device, batch_size=train.batch_size * 4)
        start = 0
        for batch in tqdm(loader, desc="encoding", disable=not progress, leave=False):
            with amp():  # the frozen encoder may encode in half precision
                taps = encoder.encode_taps(batch["image"].to(device, non_blocking=True))
            stop = start + len(batch["image"])
            for store, values in ((store_cls, taps.cls), (store_patches, taps.patches)):
                if isinstance(store, np.ndarray):
                    store[start:stop] = values.to("cpu", torch.float32).numpy()
                else:
                    store[start:stop] = values.to(store.device, dtype)
            start = stop
        return cls(store_cls, store_patches, device, where, cleanup)

    def taps(self, indices: torch.Tensor) -> Taps:
        if isinstance(self.cls, torch.Tensor):  # GPU or host memory
            rows = indices.to(self.cls.device)
            return Taps(
                *(self._as_float(t.index_select(0, rows)) for t in (self.cls, self.patches))
            )
        rows = np.sort(indices.numpy())  # memory-mapped reads in file order
        order = np.argsort(np.argsort(indices.numpy()))
        picked = (torch.from_numpy(np.asarray(t[rows])[order]) for t in (self.cls, self.patches))
        return Taps(*map(self._as_float, picked))

    def _as_float(self, values: torch.Tensor) -> torch.Tensor:
        return values.to(self.device, torch.float32, non_blocking=True)

    def close(self) -> None:
        self.cls = self.patches = None
        if self.cleanup is not None:
            shutil.rmtree(self.cleanup, ignore_errors=True)


def _disk_folder(folder: Path, size: int) -> Path:
    """A fresh folder for the cache, after checking that the disk holds it."""
    free = free_bytes(folder)
    if free < size * 1.02:
        raise DiskFullError(
            f"{folder}: the feature cache needs {size / 2**30:.2f} GiB ({size} bytes) and "
            f"{free / 2**30:.2f} GiB ({free} bytes) are free; set train.cache_dir to a disk "
            "with room (node-local scratch), or train.cache: off to re-encode every batch"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=FEATURE_CACHE_PREFIX, dir=folder))


def _preallocated(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """A memory-mapped array whose blocks are allocated now: a disk that fills up later
    cannot kill the training with SIGBUS on a page write."""
    store = np.lib.format.open_memmap(path, "w+", np.dtype(dtype), shape)
    with disk_full_named(path), open(path, "r+b") as handle:
        os.posix_fallocate(handle.fileno(), 0, os.path.getsize(path))
    return store
