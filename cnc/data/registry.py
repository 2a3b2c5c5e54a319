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


# MPDD (Jezek et al., ICUMT 2021, Table I): 888 training and 458 test images, 1346 in all.
MPDD_COUNTS: dict[str, tuple[int, int, int]] = {
    "bracket_black": (289, 32, 47),
    "bracket_brown": (185, 26, 51),
    "bracket_white": (110, 30, 30),
    "connector": (128, 30, 14),
    "metal_plate": (54, 26, 71),
    "tubes": (122, 32, 69),
}


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    url: str | None  # the default (users may override it, never the hash); None: by hand
    sha256: str | None  # None: not known here (placed by hand; the manifest pins the files)
    archive: str | None  # file name of the downloaded archive
    counts: dict[str, tuple[int, int, int]] | None  # None: no published per-class counts known
    licence: str
    page: str = ""  # where the dataset is described and requested
    convert: str = ""  # the converter of its raw layout (cnc.data.convert); "": MVTec layout


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
        page="https://github.com/amazon-science/spot-diff",
        convert="visa",
    ),
    "mvtec_ad2": RemoteDataset(
        name="mvtec_ad2",
        # URL and hash as anomalib 2.x pins them (anomalib/data/datamodules/image/mvtecad2.py).
        url=(
            "https://www.mydrive.ch/shares/121573/7f68fe2c4f7c2ceaa08f463aaeb2f414/download/"
            "466712769-1743422799/mvtec_ad_2.tar.gz"
        ),
        sha256="c0ded99ef32bfc8e352d52beb44515e5b292b8598cb963aadfa91ca0763505e4",
        archive="mvtec_ad_2.tar.gz",
        counts=None,
        licence="CC BY-NC-SA 4.0",
        page="https://www.mvtec.com/company/research/datasets/mvtec-ad-2",
        convert="mvtec_ad2",
    ),
    "mpdd": RemoteDataset(
        name="mpdd",
        url=None,  # a OneDrive folder share: downloaded by hand
        sha256=None,
        archive=None,
        counts=MPDD_COUNTS,
        licence="CC BY-NC-SA 4.0",
        page="https://github.com/stepanje/MPDD",
    ),
    "btad": RemoteDataset(
        name="btad",
        # URL and hash as anomalib 2.x pins them (anomalib/data/datamodules/image/btech.py).
        url="https://avires.dimi.uniud.it/papers/btad/btad.zip",
        sha256="461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a",
        archive="btad.zip",
        counts=None,
        licence="CC BY-NC-SA 4.0",
        page="https://avires.dimi.uniud.it/papers/btad/",
        convert="btad",
    ),
    "realiad": RemoteDataset(
        name="realiad",
        url=None,  # access on request: placed by hand
        sha256=None,
        archive=None,
        counts=None,
        licence="CC BY-NC-SA 4.0",
        page="https://realiad4ad.github.io/Real-IAD/",
        convert="realiad",
    ),
}

# Synthetic replicas of the raw layouts (cnc.data.replicas): the converters' smoke data.
REPLICAS = {f"replica_{name}": name for name in ("mvtec_ad2", "mpdd", "btad", "realiad")}

DATASET_NAMES = ("synthetic", "synthetic_visa", *REMOTE, *REPLICAS, "folder")
