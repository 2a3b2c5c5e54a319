"""Validation of an MVTec-layout folder: per-class counts, pixel formats and every
problem found."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnc.data.images import describe, header_format, image_size
from cnc.data.layout import GOOD, LayoutError, Sample, class_samples, discover_classes
from cnc.errors import BadFileError
from cnc.io import sha256_file


@dataclass
class ClassCounts:
    train: int
    test_good: int
    test_anomalous: int
    defect_types: list[str]
    pixel_formats: list[str] = field(default_factory=list)  # e.g. "8-bit RGB", "16-bit gray"


@dataclass
class CheckReport:
    root: str
    classes: dict[str, ClassCounts] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    # What may be right but is worth a look (a test image that is a training image's copy).
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "ok": self.ok,
            "classes": {c: asdict(n) for c, n in self.classes.items()},
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict) -> CheckReport:
        classes = {c: ClassCounts(**n) for c, n in data["classes"].items()}
        return cls(data["root"], classes, list(data["problems"]), list(data.get("warnings", [])))


def image_problem(path: Path) -> str | None:
    """None when the image decodes completely in a supported format, else a message
    naming the file."""
    try:
        describe(path)
    except BadFileError as exc:
        return str(exc)
    return None


def _size_problem(sample: Sample) -> str | None:
    """A message when the mask's size differs from its image's (headers only)."""
    try:
        mask_size, size = image_size(sample.mask), image_size(sample.image)
    except BadFileError as exc:
        return str(exc)
    if mask_size == size:
        return None
    return (
        f"{sample.mask}: mask size {mask_size} differs from its image "
        f"{sample.image} {size}; masks must match their image"
    )


def _sample_problems(sample: Sample, decode: bool) -> list[str]:
    found = [p for p in (image_problem(sample.image),) if p] if decode else []
    if sample.mask is not None:
        mask_problem = image_problem(sample.mask) if decode else None
        if mask_problem:
            found.append(mask_problem)
        elif not found and (size := _size_problem(sample)):
            found.append(size)
    return found


def _stray_folders(root: Path) -> list[str]:
    """Folders that look like a class but are not read as one (no train/)."""
    problems = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (folder / "train").is_dir():
            continue
        if (folder / "test").is_dir() or (folder / "ground_truth").is_dir():
            problems.append(f"{folder}: has test images but no train/good; every class needs both")
        elif not any(folder.iterdir()):
            problems.append(f"{folder}: empty folder, not a class; remove it or fill it")
    return problems


def _class_problems(root: Path, cls: str, counts: ClassCounts) -> list[str]:
    if not counts.train:
        return [f"{root / cls / 'train' / GOOD}: empty class, no training images"]
    if not counts.test_good + counts.test_anomalous:
        return [f"{root / cls / 'test'}: empty class, no test images"]
    missing = [k for k, n in (("normal", counts.test_good), ("anomalous", counts.test_anomalous))
               if not n]  # fmt: skip
    return [
        f"{root / cls / 'test'}: no {kind} test images; the image metrics need both normal "
        "(test/good) and anomalous ones"
        for kind in missing
    ]


def _shared_images(train: list[Sample], test: list[Sample]) -> list[str]:
    """Test images whose bytes are a training image's: a file copied into both splits (a
    multi-view sample listed twice, a hand-made split) is scored on what was trained. A
    warning, not a problem: a real dataset may hold two identical captures."""
    seen = {sha256_file(s.image): s.image for s in train}
    return [
        f"{s.image}: the same file as the training image {seen[digest]}; a test image must "
        "not be trained on"
        for s in test
        if (digest := sha256_file(s.image)) in seen
    ]


def check_root(root: Path, classes: list[str] | None = None, decode: bool = True) -> CheckReport:
    """Scan every class; collect counts and all problems instead of stopping at the first.

    `decode=False` skips decoding every pixel (header-level checks only), for speed.
    """
    root = Path(root)
    report = CheckReport(root=str(root))
    try:
        names = discover_classes(root, classes)
    except LayoutError as exc:
        report.problems.append(str(exc))
        return report
    if classes is None:
        report.problems.extend(_stray_folders(root))
    for cls in names:
        try:
            train = class_samples(root, cls, "train")
            test = class_samples(root, cls, "test", problems=report.problems)
        except LayoutError as exc:
            report.problems.append(str(exc))
            continue
        samples = train + test
        formats = {f for s in samples if (f := header_format(s.image))}
        counts = ClassCounts(
            train=len(train),
            test_good=sum(s.defect == GOOD for s in test),
            test_anomalous=sum(s.defect != GOOD for s in test),
            defect_types=sorted({s.defect for s in test if s.defect != GOOD}),
            pixel_formats=sorted(formats),
        )
        report.classes[cls] = counts
        report.problems.extend(_class_problems(root, cls, counts))
        report.warnings.extend(_shared_images(train, test))
        for sample in samples:
            report.problems.extend(_sample_problems(sample, decode))
    return report


def count_mismatches(report: CheckReport, expected: dict[str, tuple[int, int, int]]) -> list[str]:
    """Differences between the counted and the published (train, test good, test bad) counts."""
    found: list[str] = []
    missing = sorted(set(expected) - set(report.classes))
    if missing:
        found.append(f"{report.root}: classes missing: {', '.join(missing)}")
    for cls, want in expected.items():
        got = report.classes.get(cls)
        if got is None:
            continue
        have = (got.train, got.test_good, got.test_anomalous)
        if have != tuple(want):
            found.append(
                f"{Path(report.root) / cls}: (train, test good, test anomalous) = {have}, "
                f"published {tuple(want)}"
            )
    return found
