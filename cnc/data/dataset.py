"""Torch datasets over the MVTec layout, with the CLIP normalisation of a backbone.

Images: decoded by their real depth (cnc.data.images), converted to RGB (grayscale
classes get three equal channels) and resized to the square input resolution with bicubic
interpolation, no crop (a crop could cut a defect away). Masks: any non-zero value counts
as anomalous (so 0/255, 0/1, 16-bit and label-index masks all work); a mask must have its
image's size; the 0/1 mask is resized with antialiased bilinear interpolation and
binarised at > 0.5: a pixel is anomalous when more than half of it was
(`cnc.settings.MASK_RULE`, recorded with every run's maps).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cnc.data.images import image_size, load_image, mask_pixels
from cnc.data.layout import LayoutError, Sample, dataset_samples
from cnc.settings import DataSettings


def load_mask(path: Path | None, size: int, image: Path | None = None) -> np.ndarray:
    """bool (size, size); all False for a normal image. With `image`, a mask whose size
    differs from that image's is an error naming both (never stretched silently)."""
    if path is None:
        return np.zeros((size, size), dtype=bool)
    values = mask_pixels(path)
    if image is not None and (values.shape[1], values.shape[0]) != image_size(image):
        raise LayoutError(
            f"{path}: mask size {values.shape[1]}x{values.shape[0]} differs from its image "
            f"{image} ({'x'.join(map(str, image_size(image)))}); masks must match their image"
        )
    resized = Image.fromarray(values.astype(np.float32)).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    return np.asarray(resized) > 0.5


class AnomalyDataset(Dataset):
    """Items: image (3, R, R) normalised, mask (M, M) bool, label, class name, defect
    type, path."""

    def __init__(
        self,
        samples: Sequence[Sample],
        resolution: int,
        mask_size: int | None = None,
        mean: Sequence[float] = OPENAI_DATASET_MEAN,
        std: Sequence[float] = OPENAI_DATASET_STD,
    ) -> None:
        self.samples = list(samples)
        self.resolution = resolution
        self.mask_size = mask_size or resolution
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        pixels = torch.from_numpy(load_image(sample.image, self.resolution))
        image = (pixels.permute(2, 0, 1) - self.mean) / self.std
        return {
            "image": image,
            "mask": torch.from_numpy(load_mask(sample.mask, self.mask_size, sample.image)),
            "label": sample.label,
            "cls": sample.cls,
            "defect": sample.defect,
            "path": str(sample.image),
        }


def open_split(
    root: Path, split: str, resolution: int, classes: list[str] | None = None, **kwargs
) -> AnomalyDataset:
    """The train or test split of every class of an MVTec-layout root, as one dataset."""
    return AnomalyDataset(dataset_samples(root, split, classes), resolution, **kwargs)


def make_loader(
    dataset: Dataset,
    workers: int,
    device: str,
    batch_size: int = 1,
    batch_sampler: list[list[int]] | None = None,
) -> DataLoader:
    """Images in the dataset's order (or `batch_sampler`'s), decoded by `workers` processes
    and pinned when they go to a GPU. The loader's seed comes from its own generator, so
    it never draws from the global random state that training's dropout uses."""
    sizing = {"batch_sampler": batch_sampler} if batch_sampler else {"batch_size": batch_size}
    return DataLoader(
        dataset,
        num_workers=workers,
        pin_memory=str(device).startswith("cuda"),
        generator=torch.Generator().manual_seed(0),
        **sizing,
    )


def run_split(
    data: DataSettings,
    split: str,
    resolution: int,
    normalisation: tuple[Sequence[float], Sequence[float]],
    mask_size: int | None = None,
) -> AnomalyDataset:
    """A split of a run's dataset as its encoder expects it (resolution, mean and std)."""
    mean, std = normalisation
    classes = list(data.classes) if data.classes else None
    return open_split(
        Path(data.root), split, resolution, classes, mask_size=mask_size, mean=mean, std=std
    )
