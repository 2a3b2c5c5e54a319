"""`cnc bench ...`: benchmark commands that print measured figures side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cnc.console import DEFAULT_PARAMS, Device, Params, out, print_table, user_errors

bench_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Benchmarks that print figures."
)


@bench_app.command("metrics")
def bench_metrics(
    seed: int = 0,
    size: Annotated[int, typer.Option(help="Map side in pixels.")] = 256,
    scale: Annotated[float, typer.Option(help="Fraction of MVTec AD's test counts.")] = 1.0,
) -> None:
    """Seconds and peak memory of our metrics vs a straightforward reference, same data."""
    from cnc.bench import metrics as bench

    ours, reference = bench.run(seed, size, scale)
    rows = [
        [m.name, f"{m.seconds:.2f}", f"{m.peak_mb:.0f}", f"{reference.seconds / m.seconds:.2f}x"]
        for m in (ours, reference)
    ]
    title = f"all five metrics, 15 MVTec-shaped classes, {size}x{size} maps"
    print_table(title, ["implementation", "seconds", "peak MB", "speed-up"], rows)
    out.print(f"largest absolute difference: {bench.max_difference(ours, reference):.2e}")


@bench_app.command("bootstrap")
def bench_bootstrap(
    seed: int = 0,
    size: Annotated[int, typer.Option(help="Map side in pixels.")] = 256,
    scale: Annotated[float, typer.Option(help="Fraction of MVTec AD's test counts.")] = 1.0,
    replicates: Annotated[int, typer.Option(help="Bootstrap replicates (B).")] = 1000,
    naive: Annotated[int, typer.Option(help="Replicates per class to time the naive way.")] = 2,
) -> None:
    """Seconds and memory of B bootstrap replicates of all five metrics (every class, the
    means, mTotal) vs the naive way: each replicate's duplicated test set evaluated."""
    from cnc.bench import bootstrap as bench

    r = bench.run(seed, size, scale, replicates, naive)
    rows = [
        ["cnc.evaluation.bootstrap", f"{r.seconds:.1f}", f"{r.peak_mb:.0f}", "1.0x"],
        [
            f"naive (timed on {r.naive_timed} per class)",
            f"{r.naive_seconds:.0f}",
            "-",
            f"{r.naive_seconds / r.seconds:.0f}x slower",
        ],
    ]
    title = f"B={r.replicates}, 15 MVTec-shaped classes, {size}x{size} maps"
    print_table(title, ["implementation", "seconds", "peak MB", "ratio"], rows)
    worst = ", ".join(f"{m} {v:.1e}" for m, v in r.max_difference.items())
    out.print(f"largest difference to the naive replicates (points): {worst}")
    low, high = r.mtotal_interval
    out.print(
        f"mTotal 95 % interval [{low:.2f}, {high:.2f}]; process peak {r.process_peak_mb:.0f} MB"
    )


@bench_app.command("train")
def bench_train(
    backbone: str = "cnc-tiny-ViT-B-16",
    resolution: int = 128,
    images: Annotated[int, typer.Option(help="Training images (synthetic set).")] = 192,
    epochs: Annotated[int, typer.Option(help="Epochs timed per variant.")] = 2,
    device: Device = "auto",
    paper: Annotated[
        bool,
        typer.Option(help="ViT-L-14-336 (random weights) at 224 px on 3629 images (GPU)."),
    ] = False,
    data_root: Annotated[Path | None, typer.Option(help="Time on this dataset instead.")] = None,
    project: Annotated[int, typer.Option(help="Epochs to project one run's time to.")] = 250,
    params: Params = DEFAULT_PARAMS,
) -> None:
    """Seconds per epoch per precision and per place of the feature cache, one run, and
    the projected hours of the paper's whole grid on this device."""
    from cnc.bench import train as bench
    from cnc.params import load_params
    from cnc.training.devices import pick_device

    with user_errors():  # the grid to project to, read before anything is timed
        grid_params = load_params(params)
    if paper:
        backbone, resolution, images = "ViT-L-14-336", 224, bench.MVTEC_TRAIN_IMAGES
    device = pick_device(device)
    with user_errors():
        timings, n, timed = bench.run(backbone, resolution, images, epochs, device, data_root)
        chosen = bench.projection_variant(timings, device)
        whole = bench.grid_hours(chosen, timed, n, grid_params)
        choices = bench.grid_hours(chosen, timed, n, grid_params, "choices")
    columns = ["variant", "setup s", "s / epoch", f"{project} epochs", "speed-up", "peak GPU MB"]
    title = f"{backbone} at {resolution} px, {n} training images, {device}"
    print_table(title, columns, bench.rows(timings, project))
    out.print(
        f"the paper's grid ({whole['runs']} runs) at the throughput of {chosen.name}: "
        f"{whole['hours']:.1f} h on {device} (FLOPs-proportional projection from {backbone})",
        soft_wrap=True,
    )
    out.print(
        f"Table S1 (`snakemake choices`) adds {choices['runs']} runs: {choices['hours']:.1f} h "
        f"more on {device}",
        soft_wrap=True,
    )
    out.print(f"peak process RSS {bench.peak_rss_mb():.0f} MB")


@bench_app.command("decode")
def bench_decode(
    images: Annotated[int, typer.Option(help="PNGs to decode.")] = 96,
    size: Annotated[int, typer.Option(help="Their side in pixels (MVTec AD: 700-1024).")] = 1024,
    resolution: Annotated[int, typer.Option(help="The input resolution.")] = 224,
    workers: Annotated[list[int] | None, typer.Option(help="Worker counts (repeatable).")] = None,
) -> None:
    """Images per second the training loader decodes and resizes, per number of workers:
    whether decoding keeps up with the encoder."""
    import os

    from cnc.bench import train as bench

    counts = workers or sorted({0, 1, min(2, os.cpu_count() or 1), os.cpu_count() or 1})
    rates = bench.decode_rates(images, size, resolution, counts)
    rows = [[count, f"{rate:.1f}", f"{rate / rates[0][1]:.1f}x"] for count, rate in rates]
    title = f"{images} PNGs of {size} px to {resolution} px, {os.cpu_count()} CPUs"
    print_table(title, ["workers", "images / s", "speed-up"], rows)


@bench_app.command("cache")
def bench_cache(params: Params = DEFAULT_PARAMS) -> None:
    """Size of the feature cache of each dataset, backbone and resolution of the paper's
    grid (params.yaml at the paper scale), stored in float32 and in 16-bit floats."""
    from cnc.bench import train as bench
    from cnc.params import load_params

    with user_errors():
        sizes = bench.cache_sizes(load_params(params))
    dtypes = list(next(iter(sizes.values())))
    rows = [
        [*map(str, k), *(f"{size[d]:.1f}" for d in dtypes)] for k, size in sorted(sizes.items())
    ]
    columns = ["dataset", "backbone", "px", *(f"GB, {d}" for d in dtypes)]
    print_table("feature cache of one run (training images x 3 taps)", columns, rows)
