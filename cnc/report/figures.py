"""The figures: Fig. 4 (backbone x resolution), the T x K heat map, ablation bars and
training curves. Drawn with matplotlib's object API (no global state, no display).

Each is drawn from one built experiment (`Experiment.figures` names them) by a function
`draw(built, runs_dir, path, subtitle)`, registered in FIGURES under its file name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnc.io import atomic_path
from cnc.report.layouts import Built
from cnc.report.results import train_log


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def fig4(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """Grouped bars: mTotal per backbone, one bar per resolution (the paper's Fig. 4)."""
    data = built.frame
    backbones = list(dict.fromkeys(data["backbone"]))
    resolutions = sorted(set(data["resolution"]))
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    width = 0.8 / len(resolutions)
    x = np.arange(len(backbones))
    for i, res in enumerate(resolutions):
        part = data[data["resolution"] == res].set_index("backbone").reindex(backbones)
        err = part["std"].astype(float).fillna(0).to_numpy()
        ax.bar(x + i * width, part["mtotal"], width, yerr=err, label=f"{res}x{res}")
        known = part["paper_mtotal"].astype(float)
        for j, value in enumerate(known):
            if not np.isnan(value):
                ax.plot(x[j] + i * width, value, "k*", markersize=10, label="paper (stated)")
    ax.set_xticks(x + width * (len(resolutions) - 1) / 2, backbones)
    ax.set_ylabel("mTotal (mean of the five metrics, %)")
    low = float(np.nanmin(data["mtotal"])) if len(data) else 0.0
    ax.set_ylim(max(0.0, low - 10), 100)
    ax.legend(fontsize=7, ncols=3)
    ax.set_title(f"Fig. 4: backbone and resolution, MVTec AD role\n{subtitle}", fontsize=9)
    _save(fig, path)


def table4_heatmap(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """I-AUROC and P-AUROC over T (rows) x K (columns); blank where K > T."""
    table = built.tables[0]
    rows = [label for label, _ in table.rows]
    columns = table.header[1:]
    fig = Figure(figsize=(8, 3.6))
    for position, (ax, name) in enumerate(
        zip(fig.subplots(1, 2), ("I-AUROC", "P-AUROC"), strict=True)
    ):
        grid = np.full((len(rows), len(columns)), np.nan)
        for i, (_, cells) in enumerate(table.rows):
            for j, cell in enumerate(cells):
                if isinstance(cell, list) and cell[position].value is not None:
                    grid[i, j] = cell[position].value
        image = ax.imshow(grid, cmap="viridis")
        for i in range(len(rows)):
            for j in range(len(columns)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=7,
                            color="white")  # fmt: skip
        ax.set_xticks(range(len(columns)), columns, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(f"Table 4: MoE experts T and top K\n{subtitle}", fontsize=9)
    _save(fig, path)


def ablation(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """Table 2 as bars: this benchmark's three metrics per row, the paper's as outlines."""
    table = built.tables[0]
    labels = [label for label, _ in table.rows]
    ours = np.array([[n.value for n in cells[3]] for _, cells in table.rows], dtype=float)
    theirs = np.array(
        [[np.nan if n.value is None else n.value for n in cells[5]] for _, cells in table.rows]
    )
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.subplots()
    x = np.arange(len(labels))
    for i, name in enumerate(("I-AUROC", "P-AUROC", "AUPRO")):
        ax.bar(x + i * 0.27, ours[:, i], 0.27, label=f"{name} (this benchmark)")
        ax.bar(x + i * 0.27, theirs[:, i], 0.27, fill=False, edgecolor="black", linewidth=0.6,
               label="paper" if i == 0 else None)  # fmt: skip
    switches = [f"{r}\n{''.join('M' if c == '✓' else '-' for c in cells[:3])}"
                for r, (_, cells) in zip(labels, table.rows, strict=True)]  # fmt: skip
    ax.set_xticks(x + 0.27, switches, fontsize=8)
    ax.set_ylabel("%")
    low = np.nanmin(np.concatenate([ours.ravel(), theirs.ravel()]))
    ax.set_ylim(max(0.0, low - 10), 100)
    ax.legend(fontsize=7, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    ax.set_title(f"Table 2 ablation (row, then MLF/CNC/MoE on: M)\n{subtitle}", fontsize=9)
    _save(fig, path)


def training_curves(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """Distillation and total loss per epoch of the Table 2 runs (first seed)."""
    logs = {c.row: train_log(runs_dir, c.runs[0]) for c in built.cells}
    fig = Figure(figsize=(8, 3.6))
    axes = fig.subplots(1, 2)
    for name, log in logs.items():
        for ax, term in zip(axes, ("distill", "total"), strict=True):
            ax.plot(log["epoch"], log[term], marker=".", label=f"Table 2 row {name}")
    for ax, term in zip(axes, ("L_distill (eq. 9)", "L_total (eq. 16)"), strict=True):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(term, fontsize=9)
        ax.set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.suptitle(f"Training curves\n{subtitle}", fontsize=9)
    _save(fig, path)


def cost(built: Built, runs_dir: Path, path: Path, subtitle: str) -> None:
    """mTotal against inference GFLOPs per image (Table 5), one colour per backbone; the
    Fig. 4 points labelled by resolution, the Table 4 points by T and K."""
    frame = built.frame.assign(point=[c.points[0] for c in built.cells])
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for backbone, group in frame.groupby(frame["point"].map(lambda p: p.backbone), sort=False):
        ax.scatter(group["gflops_inference"], group["mtotal"], label=backbone, s=28)
        for row in group.itertuples():
            label = row.cell.split(": ", 1)[-1].split(" ")[-1]  # "224", or "K=2" / "None"
            ax.annotate(label, (row.gflops_inference, row.mtotal), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("GFLOPs per image, inference (log scale)")
    ax.set_ylabel("mTotal (mean of the five metrics, %)")
    ax.legend(fontsize=7, title="backbone", title_fontsize=7)
    ax.set_title(f"Table 5: what each run scores against what it costs\n{subtitle}", fontsize=9)
    _save(fig, path)


def diagnostics(run: str, runs_dir: Path, path: Path, subtitle: str) -> None:
    """One run's training diagnostics per epoch (cnc.diagnostics): where the gradients of
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
