"""Validation of an MVTec-layout folder: per-class counts and every problem found."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from cnc.data.layout import GOOD, LayoutError, Sample, class_samples, discover_classes


@dataclass
class ClassCounts:
    train: int
    test_good: int
    test_anomalous: int
    defect_types: list[str]


@dataclass
class CheckReport:
    root: str
    classes: dict[str, ClassCounts] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "ok": self.ok,
            "classes": {c: asdict(n) for c, n in self.classes.items()},
            "problems": list(self.problems),
        }


def image_problem(path: Path) -> str | None:
    """None when the image decodes completely, else a message naming the file."""
    try:
        with Image.open(path) as im:
            im.load()  # decodes every byte: catches truncated files, not only bad headers
    except (OSError, SyntaxError, ValueError) as exc:
        return f"{path}: unreadable or truncated image ({exc}); replace the file"
    return None


def _image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def _size_problem(sample: Sample) -> str | None:
    """A message when the mask's size differs from its image's (headers only)."""
    mask_size, image_size = _image_size(sample.mask), _image_size(sample.image)
    if mask_size == image_size:
        return None
    return (
        f"{sample.mask}: mask size {mask_size} differs from its image "
        f"{sample.image} {image_size}; masks must match their image"
    )


def _sample_problems(sample: Sample) -> list[str]:
    found = [p for p in (image_problem(sample.image),) if p]
    if sample.mask is not None:
        mask_problem = image_problem(sample.mask)
        if mask_problem:
            found.append(mask_problem)
        elif not found and (size := _size_problem(sample)):
            found.append(size)
    return found


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
    for cls in names:
        try:
            train = class_samples(root, cls, "train")
            test = class_samples(root, cls, "test", problems=report.problems)
        except LayoutError as exc:
            report.problems.append(str(exc))
            continue
        defects = sorted({s.defect for s in test if s.defect != GOOD})
        report.classes[cls] = ClassCounts(
            train=len(train),
            test_good=sum(s.defect == GOOD for s in test),
            test_anomalous=sum(s.defect != GOOD for s in test),
            defect_types=defects,
        )
        if not train:
            empty = root / cls / "train" / GOOD
            report.problems.append(f"{empty}: empty class, no training images")
        if not test:
            report.problems.append(f"{root / cls / 'test'}: empty class, no test images")
        for sample in train + test:
            if decode:
                report.problems.extend(_sample_problems(sample))
            elif sample.mask is not None and (size := _size_problem(sample)):
                report.problems.append(size)
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
