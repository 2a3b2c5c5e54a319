"""The figures: Fig. 4 (backbone x resolution), the T x K heat map, ablation bars and
training curves. Drawn with matplotlib's object API (no global state, no display).

Each is drawn from one built experiment (`Experiment.figures` names them) by a function
`draw(built, runs_dir, path, subtitle)`, registered in FIGURES under its file name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

from cnc.io import atomic_path
from cnc.report.layouts import Built, components, datasets_of
from cnc.report.results import train_log

VECTOR = ".pdf"  # every figure is also saved as a vector file beside its PNG


def _save(fig: Figure, path: Path, rect: tuple[float, ...] = (0, 0, 1, 1)) -> None:
    """The PNG (for Markdown and a quick look) and the PDF (for a paper) of `fig`, laid
    out within `rect` (the rest is left to a figure legend or notes)."""
    fig.tight_layout(rect=rect)
    for target, kind in ((path, "png"), (path.with_suffix(VECTOR), "pdf")):
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=kind, dpi=150)


def _dataset(built: Built) -> str:
    return ", ".join(datasets_of(built.results))


def fig4(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """Grouped bars: mTotal per backbone, one bar per resolution (the paper's Fig. 4),
    with the 95 % bootstrap interval; the paper's stated points as stars."""
    data = built.frame
    backbones = list(dict.fromkeys(data["backbone"]))
    resolutions = sorted(set(data["resolution"]))
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.subplots()
    width = 0.8 / len(resolutions)
    x = np.arange(len(backbones))
    starred = False
    for i, res in enumerate(resolutions):
        part = data[data["resolution"] == res].set_index("backbone").reindex(backbones)
        mtotal = part["mtotal"].astype(float).to_numpy()
        low = part["mtotal_lower"].astype(float).to_numpy()
        high = part["mtotal_upper"].astype(float).to_numpy()
        err = np.nan_to_num(np.stack([mtotal - low, high - mtotal]))
        trained = sorted(set(part["trained_resolution"].dropna().astype(int)))
        # each backbone trains at the resolution its patch tiles (ViT-L/14: 126 for 128)
        shown = " or ".join(map(str, trained))
        label = f"{res} px" + (f" (trained at {shown} px)" if trained not in ([], [res]) else "")
        ax.bar(x + i * width, mtotal, width, yerr=err, capsize=2, label=label)
        for j, value in enumerate(part["paper_mtotal"].astype(float)):
            if not np.isnan(value):
                ax.plot(x[j] + i * width, value, "k*", markersize=9,
                        label=None if starred else "paper (stated in its text)")  # fmt: skip
                starred = True
    ax.set_xticks(x + width * (len(resolutions) - 1) / 2, backbones)
    ax.set_ylabel("mTotal (%, mean of the five metrics)")
    ax.set_ylim(0, 100)  # bars start at 0: their lengths compare
    notes = ["error bars: 95 % bootstrap interval"]
    twins = _identical_columns(data, backbones)
    if twins:
        notes.append(
            f"{' = '.join(twins)}: the same tiny stand-in (patch 14, random weights) trained "
            "at the same resolution, so the same numbers"
        )
    ax.set_title(
        f"Fig. 4: backbone and input resolution ({_dataset(built)})\n{subtitle}", fontsize=9
    )
    fig.text(0.01, 0.005, "\n".join(notes), fontsize=6.5, va="bottom")
    bottom = 0.1 + 0.03 * len(notes)  # the legend, then the notes, under the axes
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, ncols=3, loc="lower center",
               bbox_to_anchor=(0.5, 0.03 * len(notes) + 0.01))  # fmt: skip
    _save(fig, path, rect=(0, bottom, 1, 1))


def _identical_columns(data, backbones: list[str]) -> list[str]:
    """Backbones whose every bar equals another's (at the smoke scale, ViT-L-14 and
    ViT-L-14-336 are one tiny architecture)."""
    columns = {b: tuple(data[data["backbone"] == b].sort_values("resolution")["mtotal"])
               for b in backbones}  # fmt: skip
    for a in backbones:
        same = [b for b in backbones if b != a and columns[b] == columns[a]]
        if same:
            return [a, *same]
    return []


def _grid(table, position: int, skip: str = "None") -> tuple[np.ndarray, list[str]]:
    rows = [label for label, _ in table.rows if label != skip]
    grid = np.full((len(rows), len(table.header) - 1), np.nan)
    for i, (_, cells) in enumerate(r for r in table.rows if r[0] != skip):
        for j, cell in enumerate(cells):
            if isinstance(cell, list) and cell[position].value is not None:
                grid[i, j] = cell[position].value
    return grid, rows


def _moe_off(table, position: int) -> str:
    """The MoE-off ("None") row's value, for the panel title (it has no T or K)."""
    for label, cells in table.rows:
        if label == "None" and isinstance(cells[0], list) and cells[0][position].value is not None:
            return f"; MoE off: {cells[0][position].value:.1f}"
    return ""


def _half_widths(table, position: int) -> list[float]:
    """Half the width of each cell's 95 % interval (this benchmark's numbers)."""
    return [
        (cells[0][position].high - cells[0][position].low) / 2
        for _, cells in table.rows
        if isinstance(cells[0], list) and cells[0][position].high is not None
    ]


def table4_heatmap(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """I-AUROC and P-AUROC over T (rows) x K (columns), this benchmark's and the paper's;
    blank where K > T or the paper gives no value. One colour scale per metric for both
    panels, and the cells' interval width stated: differences inside it are noise."""
    panels = [(t, "paper" if t.section == "paper" else "this benchmark") for t in built.tables]
    fig = Figure(figsize=(9, 3.4 * len(panels) + 0.4))
    axes = fig.subplots(len(panels), 2, squeeze=False)
    scales = []  # per metric: the range of every panel's values
    for position in range(2):
        values = np.concatenate([_grid(t, position)[0].ravel() for t, _ in panels])
        values = values[np.isfinite(values)]
        scales.append((values.min(), values.max()) if values.size else (0.0, 1.0))
    notes = ["one colour scale per metric for both panels"]
    for (table, who), row_axes in zip(panels, axes, strict=True):
        columns = table.header[1:]
        for position, (ax, name) in enumerate(zip(row_axes, ("I-AUROC", "P-AUROC"), strict=True)):
            grid, rows = _grid(table, position)
            shown = np.ma.masked_invalid(grid)
            low, high = scales[position]
            image = ax.imshow(shown, cmap="viridis", vmin=low, vmax=high)
            finite = grid[np.isfinite(grid)]
            middle = (low + high) / 2
            widths = _half_widths(table, position) if who == "this benchmark" else []
            if widths:
                notes.append(
                    f"{name} of this benchmark: median 95 % interval ±{np.median(widths):.1f} "
                    "points: cells closer than that do not differ"
                )
            for i, j in zip(*np.nonzero(np.isfinite(grid)), strict=True):
                colour = "black" if grid[i, j] > middle else "white"  # dark on yellow
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                        color=colour)  # fmt: skip
            ax.set_xticks(range(len(columns)), columns, fontsize=8)
            ax.set_yticks(range(len(rows)), rows, fontsize=8)
            ax.set_xlabel("top K", fontsize=8)
            ax.set_ylabel("experts T", fontsize=8)
            ax.set_title(f"{who}: {name}{_moe_off(table, position)}", fontsize=9)
            if finite.size:
                fig.colorbar(image, ax=ax, fraction=0.046).set_label(f"{name} (%)", fontsize=8)
    fig.suptitle(f"Table 4: MoE experts T and top K ({_dataset(built)})\n{subtitle}", fontsize=9)
    fig.text(0.01, 0.005, "; ".join(notes), fontsize=6.5, va="bottom", wrap=True)
    _save(fig, path, rect=(0, 0.04, 1, 1))


def _error(n) -> list[float]:
    """How far a number's 95 % interval reaches below and above it (0 without one)."""
    if n.low is None or n.high is None:
        return [0.0, 0.0]
    return [n.value - n.low, n.high - n.value]


def ablation(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """Table 2 as bars: this benchmark's three metrics per row, the paper's as outlines."""
    table = built.tables[0]
    labels = [label for label, _ in table.rows]
    nums = [cells[3] for _, cells in table.rows]
    ours = np.array([[n.value for n in row] for row in nums], dtype=float)
    theirs = np.array(
        [[np.nan if n.value is None else n.value for n in cells[5]] for _, cells in table.rows]
    )
    fig = Figure(figsize=(8, 4.4))
    ax = fig.subplots()
    x = np.arange(len(labels))
    handles = []
    for i, name in enumerate(("I-AUROC", "P-AUROC", "AUPRO")):
        err = np.array([_error(n[i]) for n in nums]).T  # (2, rows): below and above
        bars = ax.bar(x + i * 0.27, ours[:, i], 0.27, yerr=err, capsize=2, color=f"C{i}",
                      error_kw={"linewidth": 0.7}, label=f"{name} (this benchmark)")  # fmt: skip
        handles.append(bars)
        for j, row in enumerate(nums):  # the paired difference to the full model
            if row[i].differs:
                top = row[i].high if row[i].high is not None else row[i].value
                ax.text(x[j] + i * 0.27, top + 1, "†", ha="center", fontsize=9)
        outline = ax.bar(x + i * 0.27, theirs[:, i], 0.27, fill=False, edgecolor="black",
                         linewidth=0.6, label="paper")  # fmt: skip
    if not np.isnan(theirs).all():
        handles.append(outline)
    names = [f"{c.row}\n{components(c.points[0])}" for c in built.cells]
    ax.set_xticks(x + 0.27, names, fontsize=7.5)
    ax.set_xlabel("Table 2 row: the components switched on", fontsize=8)
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.legend(handles=handles, fontsize=7, ncols=4, loc="upper center",
              bbox_to_anchor=(0.5, -0.22))  # fmt: skip
    ax.set_title(f"Table 2: ablation of MLF, CNC and MoE ({_dataset(built)})\n{subtitle}",
                 fontsize=9)  # fmt: skip
    note = ("error bars: 95 % bootstrap interval; †: differs from the full model (row vii; "
            "its paired 95 % interval excludes 0)")  # fmt: skip
    fig.text(0.01, 0.005, note, fontsize=6.5, va="bottom")
    _save(fig, path, rect=(0, 0.03, 1, 1))


def training_curves(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """Distillation and total loss per epoch of the Table 2 runs (first seed)."""
    switches = {c.row: components(c.points[0]) for c in built.cells}
    logs = {c.row: train_log(runs_dir, c.runs[0]) for c in built.cells}
    fig = Figure(figsize=(8.5, 3.8))
    axes = fig.subplots(1, 2)
    for name, log in logs.items():
        for ax, term in zip(axes, ("distill", "total"), strict=True):
            label = f"{name}: {switches.get(name, '')}"
            ax.plot(log["epoch"], log[term], marker=".", label=label)
    for ax, term in zip(axes, ("L_distill (eq. 9)", "L_total (eq. 16)"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{term.split(' ')[0]} (log scale)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(term, fontsize=9)
        ax.set_yscale("log")
        # a narrow range holds few powers of ten: label 1, 2, 3, 5 and 7 times each
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    axes[0].legend(fontsize=6, title="Table 2 row: components", title_fontsize=6)
    fig.suptitle(f"Training curves of the Table 2 runs\n{subtitle}", fontsize=9)
    _save(fig, path)


MARKERS = ("o", "s", "^", "D", "v", "P")


def cost(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """mTotal against inference GFLOPs per image (Table 5): the Fig. 4 runs one marker per
    backbone, labelled by resolution; the Table 4 runs (one backbone and resolution, so
    nearly one x) as small crosses, only the main run and "None" labelled; backbones whose
    points coincide drawn hollow over each other and named."""
    frame = built.frame.assign(point=[c.points[0] for c in built.cells])
    fig = Figure(figsize=(7.5, 4.6))
    ax = fig.subplots()
    fig4 = frame[frame["cell"].str.startswith("fig4")]
    moe = frame[~frame["cell"].str.startswith("fig4")]
    of = fig4["point"].map(lambda p: p.backbone)
    backbones = list(dict.fromkeys(of))
    place = {b: fig4[of == b][["gflops_inference", "mtotal"]].round(6).to_numpy().tolist()
             for b in backbones}  # fmt: skip
    twins = [b for b in backbones if any(place[o] == place[b] for o in backbones if o != b)]
    for k, backbone in enumerate(backbones):
        group = fig4[of == backbone]
        hollow = backbone in twins[1:]
        ax.scatter(group["gflops_inference"], group["mtotal"], marker=MARKERS[k % len(MARKERS)],
                   s=70 if hollow else 30, facecolors="none" if hollow else f"C{k}",
                   edgecolors=f"C{k}", label=backbone, zorder=3)  # fmt: skip
        if hollow:
            continue  # its labels are its twin's
        at: dict[tuple[float, float], list[str]] = {}  # resolutions trained alike coincide
        for row in group.itertuples():
            key = (round(row.gflops_inference, 9), round(row.mtotal, 6))
            at.setdefault(key, []).append(row.cell.split(" ")[-1])
        for (x, y), resolutions in at.items():
            ax.annotate(" = ".join(resolutions), (x, y), fontsize=6, xytext=(4, -3),
                        textcoords="offset points")  # fmt: skip
    if len(moe):
        ax.scatter(moe["gflops_inference"], moe["mtotal"], marker="x", s=18, color="grey",
                   label=f"Table 4 runs ({len(moe)}: T x K)", zorder=2)  # fmt: skip
        for row in moe.itertuples():
            if row.cell.endswith(("None", "T=5 K=2")):
                ax.annotate(row.cell.split(": ", 1)[-1], (row.gflops_inference, row.mtotal),
                            fontsize=6, xytext=(-4, 3), textcoords="offset points",
                            color="grey", ha="right")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per image, inference (log scale)")
    ax.set_ylabel("mTotal (mean of the five metrics, %)")
    ax.legend(fontsize=7, title="backbone (labels: resolution)", title_fontsize=7)
    ax.set_title(f"Table 5: what each run scores against what it costs\n{subtitle}", fontsize=9)
    if len(twins) > 1:
        fig.text(0.01, 0.005, f"{' and '.join(twins)}: the same points (the same tiny stand-in "
                 "at the same resolutions), drawn over each other", fontsize=6.5)  # fmt: skip
    _save(fig, path, rect=(0, 0.03 if len(twins) > 1 else 0, 1, 1))


def diagnostics(run: str, runs_dir: Path, path: Path, subtitle: str) -> None:
    """One run's training diagnostics per epoch (cnc.training.diagnostics): where the gradients of
    each loss term go, how the router spreads the tokens, the noise, the anchors' drift
    and what eq. 1 classifies as normal."""
    log = train_log(runs_dir, run)
    fig = Figure(figsize=(11, 6.4))
    axes = fig.subplots(2, 3).ravel()
    # title, column prefix, y label, y range (None: log scale, for gradient norms)
    panels = [
        ("gradient norm into the prompts", "grad_prompts_", "L2 norm", None),
        ("gradient norm into the decoder", "grad_decoder_", "L2 norm", None),
        ("MoE: share of top-K choices per expert", "moe_load_", "share of tokens", (0, 1)),
        ("noise-to-signal ratio per tap", "noise_ratio_", "||noise|| / ||f_i||", (0, None)),
        ("cosine of g_n^i to its value at the start", "text_drift_", "cosine", (None, 1)),
        ("share of the batch classified normal (eq. 1)", "normal_", "share", (0, 1)),
    ]
    names = {"distill": "L_distill", "c1": "L_c1", "c2": "gamma L_c2", "moe": "L_moe"}
    for ax, (title, prefix, unit, limits) in zip(axes, panels, strict=True):
        columns = [c for c in log.columns if c.startswith(prefix)]
        zero = []
        for column in columns:
            key = column.removeprefix(prefix)
            label = names.get(key, key.replace("ehat_", "e^ ").replace("e_", "e ", 1))
            values = log[column]
            if limits is None and not (values > 0).any():
                zero.append(label)  # a log scale cannot show it: named below instead
                continue
            style = "--" if key.startswith("ehat") else "-"
            ax.plot(log["epoch"], values.where(values > 0) if limits is None else values,
                    marker=".", ls=style, label=label)  # fmt: skip
        if zero or not columns:  # in the title, where no curve can hide it
            note = "not in this run" if not columns else f"0 throughout: {', '.join(zero)}"
            title = f"{title}\n({note})"
        if limits is None:
            if len(zero) < len(columns):
                ax.set_yscale("log")
            else:
                ax.set_yticks([])
        elif columns:
            values = log[columns].to_numpy(dtype=float)
            low, high = limits
            top = 1.5 * float(np.nanmax(values)) if high is None else high
            bottom = min(0.0, float(np.nanmin(values))) if low is None else low
            ax.set_ylim(bottom - 0.03 * (top - bottom), top + 0.03 * (top - bottom))
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(unit, fontsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(log["epoch"].min() - 0.5, log["epoch"].max() + 0.5)
        if len(zero) < len(columns):
            ax.legend(fontsize=6)
    fig.suptitle(f"Training diagnostics of {run}\n{subtitle}", fontsize=9)
    _save(fig, path)


Draw = Callable[[Built, Path, Path, str], None]
FIGURES: dict[str, Draw] = {
    "fig4.png": fig4,
    "table4_heatmap.png": table4_heatmap,
    "ablation.png": ablation,
    "training_curves.png": training_curves,
    "cost.png": cost,
}
RUN_FIGURES: dict[str, Callable[[str, Path, Path, str], None]] = {"diagnostics": diagnostics}
