"""The public datasets: where they come from, their pinned hashes and published counts."""

from __future__ import annotations

from dataclasses import dataclass

# (train, test good, test anomalous) per class, as published by the dataset authors.
MVTEC_COUNTS: dict[str, tuple[int, int, int]] = {
    "bottle": (209, 20, 63),
    "cable": (224, 58, 92),
    "capsule": (219, 23, 109),
    "carpet": (280, 28, 89),
    "grid": (264, 21, 57),
    "hazelnut": (391, 40, 70),
    "leather": (245, 32, 92),
    "metal_nut": (220, 22, 93),
    "pill": (267, 26, 141),
    "screw": (320, 41, 119),
    "tile": (230, 33, 84),
    "toothbrush": (60, 12, 30),
    "transistor": (213, 60, 40),
    "wood": (247, 19, 60),
    "zipper": (240, 32, 119),
}

# The 1cls split of split_csv/1cls.csv, the one multi-class papers use.
VISA_COUNTS: dict[str, tuple[int, int, int]] = {
    "candle": (900, 100, 100),
    "capsules": (542, 60, 100),
    "cashew": (450, 50, 100),
    "chewinggum": (453, 50, 100),
    "fryum": (450, 50, 100),
    "macaroni1": (900, 100, 100),
    "macaroni2": (900, 100, 100),
    "pcb1": (904, 100, 100),
    "pcb2": (901, 100, 100),
    "pcb3": (905, 101, 100),
    "pcb4": (904, 101, 100),
    "pipe_fryum": (450, 50, 100),
}


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    url: str  # the default; users may override it, never the hash
    sha256: str
    archive: str  # file name of the downloaded archive
    counts: dict[str, tuple[int, int, int]]
    licence: str


REMOTE: dict[str, RemoteDataset] = {
    "mvtec": RemoteDataset(
        name="mvtec",
        # The share link has changed several times while the archive stayed the same.
        url=(
            "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/"
            "download/420938113-1629952094/mvtec_anomaly_detection.tar.xz"
        ),
        sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
        archive="mvtec_anomaly_detection.tar.xz",
        counts=MVTEC_COUNTS,
        licence="CC BY-NC-SA 4.0",
    ),
    "visa": RemoteDataset(
        name="visa",
        url="https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
        sha256="2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
        archive="VisA_20220922.tar",
        counts=VISA_COUNTS,
        licence="CC BY 4.0",
    ),
}

DATASET_NAMES = ("synthetic", "synthetic_visa", "mvtec", "visa", "folder")
