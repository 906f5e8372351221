"""The study in one place: per-case metrics from run (or sweep) directories and segmentation
evaluations, aggregated into tables, box plots and a gallery, written as Markdown and HTML.

Methods are labelled ``<method> (<run folder>)`` when several runs are reported, e.g.
``pix2pix (gamma=0,generator=unet,lambda=100)``; a run folder named ``model=<method>`` (a baseline
of the paper's sweep) gives the bare method name. The same labels are used by ``evaluate.py``, so
image and segmentation metrics of one model meet in one row.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.files import atomic_write, read_rows_csv
from datamodules.task import SynthesisTask
from evaluation.directions import lower_is_better
from evaluation.run_folder import RunFolder, find_runs, label_in_run
from evaluation.scoring import METRICS, format_value, summarise
from evaluation.segmentation_metrics import SEGMENTATION_METRICS

ROLE_ORDER = ("test", "no_ground_truth", "validation")
SEGMENTATION_REPORTED = ("dice_mean", "dice_WT", "dice_TC", "dice_ET", "hd95_mean", "hd95_WT", "dice_change_mean")
#: Segmentation rows of the real contrast (``real_t2``; see :func:`evaluation.segmentation.real_label`).
REAL_PREFIX = "real_"


def family(label: str) -> str:
    """``pix2pix (gamma=0,...)`` -> ``pix2pix``; ``brainclustering_unfiltered (...)`` -> itself."""
    return label.split(" (")[0]


@dataclass
class Study:
    """Per-case rows of image metrics and of segmentation metrics, by method label."""

    image_rows: list[dict[str, Any]] = field(default_factory=list)
    segmentation_rows: list[dict[str, Any]] = field(default_factory=list)
    runs: list[RunFolder] = field(default_factory=list)
    case_files: dict[str, dict[str, Path]] = field(default_factory=dict)  # label -> case -> prediction file
    tasks: list[SynthesisTask] = field(default_factory=list)  # of the runs, each once
    run_numbers: dict[str, int] = field(default_factory=dict)  # a run's own label -> its run's number (from 1)
    sources: dict[str, list[RunFolder]] = field(default_factory=dict)  # label -> the runs that hold it
    skipped: list[str] = field(default_factory=list)  # folders found and left out, one sentence each

    def short(self, label: str) -> str:
        """The label shown in tables and figures: ``pix2pix #3`` for ``pix2pix (<run 3's folder>)``;
        the runs' legend (:meth:`legend`) says which folder each number is."""
        number = self.run_numbers.get(label)
        if number is None:
            return label
        task = f" [{self.runs[number - 1].task}]" if len(self.tasks) > 1 else ""
        return f"{family(label)} #{number}{task}"

    def legend(self) -> list[list[str]]:
        """Rows (number, run folder, model, task, path) of the runs whose methods are labelled by number."""
        numbered = sorted(set(self.run_numbers.values()))
        return [
            [f"#{k}", run.name, run.model_name or "?", str(run.task), str(run.path)]
            for k in numbered
            for run in [self.runs[k - 1]]
        ]

    def merges(self) -> list[str]:
        """What :func:`collect` merged, and why, one sentence each."""
        sentences = []
        for label, runs in self.sources.items():
            if len(runs) < 2:
                continue
            if label in self.run_numbers:  # two runs with one folder name: the same settings
                sentences.append(
                    f"{self.short(label)}: {len(runs)} runs have the same settings (folder {runs[0].name}: "
                    f"{', '.join(str(r.path) for r in runs)}); only the first one's cases are kept."
                )
            else:
                sentences.append(
                    f"{label}: fitted in {len(runs)} runs on the same data; its cases are kept once, from "
                    f"{runs[0].path}."
                )
        return sentences

    @property
    def title(self) -> str:
        """The task(s) the runs did, e.g. ``t1+t1ce+flair -> t2``."""
        return "; ".join(map(str, self.tasks)) or str(SynthesisTask())

    @property
    def target(self) -> str:
        """The target contrast of the runs' task (T2 when they differ)."""
        targets = {task.target for task in self.tasks}
        return targets.pop() if len(targets) == 1 else "t2"

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(row["method"] for row in self.image_rows))


def collect(run_folders: Sequence[Path], segmentation_folders: Sequence[Path] = ()) -> Study:
    """Read every run's ``metrics.csv`` (a baseline repeated in several runs of one task is kept once)
    and every ``segmentation_metrics.csv``. When the runs differ in task, each label ends with its
    run's task: a baseline's label (``complementary [t1 -> t2]``), a run's own model where it is shown
    (:meth:`Study.short`: ``bc #2 [t1 -> t2]``) and the runs' legend."""
    study = Study()
    study.runs = find_runs(run_folders, study.skipped)
    several = len(study.runs) > 1
    study.tasks = list(dict.fromkeys(run.task for run in study.runs))
    seen: set[tuple[str, str, str]] = set()
    for number, run in enumerate(study.runs, start=1):
        for row in run.read_metrics():
            label = label_in_run(row["method"], run, several)
            if label != row["method"]:  # the run's own model: shown by its number (and task, :meth:`short`)
                study.run_numbers.setdefault(label, number)
            elif len(study.tasks) > 1:  # a baseline of runs of different tasks: its run's task
                label = f"{label} [{run.task}]"
            if run not in study.sources.setdefault(label, []):
                study.sources[label].append(run)
            if (label, row["role"], row["case_id"]) in seen:
                continue
            seen.add((label, row["role"], row["case_id"]))
            study.image_rows.append({**row, "method": label})
            prediction = run.prediction(row["method"], row["role"], row["case_id"])
            study.case_files.setdefault(label, {})[row["case_id"]] = prediction
    for folder in segmentation_folders:
        path = folder / "segmentation_metrics.csv" if folder.is_dir() else folder
        study.segmentation_rows += read_rows_csv(path)
    return study


def roles_in(rows: Sequence[dict[str, Any]]) -> list[str]:
    present = {row["role"] for row in rows}
    return [role for role in ROLE_ORDER if role in present] + sorted(present - set(ROLE_ORDER))


def selection_role(summary: list[dict[str, Any]]) -> str | None:
    """The role models are selected on: validation (as the paper), else test, else None; a role
    counts only with a score (cases without the real target have none)."""
    roles = {
        entry["role"]
        for entry in summary
        if any(isinstance(value, dict) and value.get("mean") is not None for value in entry.values())
    }
    return next((role for role in ("validation", "test") if role in roles), None)


def selection_note(summary: list[dict[str, Any]]) -> str:
    """How :func:`best_on_validation` picked its models, in a sentence for the report."""
    role = selection_role(summary)
    if role == "validation":
        cases = max(entry["cases"] for entry in summary if entry["role"] == role)
        return (
            f"Each model is selected on the validation split ({cases} case{'s' * (cases != 1)}), as the paper does, "
            "and shown with its test mean."
        )
    if role == "test":
        return (
            "There are no validation cases, so each model is selected on the test split itself: "
            "its test mean is optimistic."
        )
    return "No model could be selected: there are no validation or test scores."


def best_on_validation(summary: list[dict[str, Any]], metrics: Sequence[str]) -> list[dict[str, str]]:
    """For each metric, the method with the best validation mean (as the paper selects its models)
    and that method's test mean; the test role decides when there is no validation role
    (:func:`selection_role`)."""
    by_role: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in summary:
        by_role.setdefault(entry["role"], {})[entry["method"]] = entry
    role = selection_role(summary) or "test"
    choices = []
    for metric in metrics:
        candidates = [
            (entry[metric]["mean"], method)
            for method, entry in by_role.get(role, {}).items()
            if not method.startswith(REAL_PREFIX) and entry.get(metric) and entry[metric]["mean"] is not None
        ]
        if not candidates:
            continue
        _, method = (min if lower_is_better(metric) else max)(candidates)
        test = by_role.get("test", {}).get(method, {}).get(metric)
        choices.append(
            {
                "metric": metric,
                "best method": method,
                f"{role} mean": format_value(by_role[role][method][metric]),
                "test mean ± sd": format_value(test) if test else "n/a",
            }
        )
    return choices


# -- figures -------------------------------------------------------------------------------------


def box_plots(rows: Sequence[dict[str, Any]], metrics: Sequence[str], role: str, path: Path, title: str) -> Path | None:
    """One box plot per metric: one box per method, over the role's cases."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(row["method"] for row in rows if row["role"] == role))
    if not methods:
        return None
    # One panel per metric, stacked, so that the width grows with the methods only.
    width = max(6.0, 1.5 + 0.32 * len(methods))
    figure, axes = plt.subplots(len(metrics), 1, figsize=(width, 1.4 + 3.6 * len(metrics)), squeeze=False)
    for axis, metric in zip(axes[:, 0], metrics, strict=True):
        values = [
            [row[metric] for row in rows if row["method"] == m and row["role"] == role and row.get(metric) is not None]
            for m in methods
        ]
        axis.boxplot([v if v else [np.nan] for v in values])
        axis.set_xticks(range(1, len(methods) + 1), methods, rotation=50, ha="right", fontsize=8)
        axis.set_title(metric, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{title} ({role})", fontsize=10)
    figure.tight_layout()
    with atomic_write(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)
    return path


def gallery(
    sources: dict[str, np.ndarray],
    real: np.ndarray,
    brain: np.ndarray,
    segmentation: np.ndarray | None,
    synthetic: dict[str, np.ndarray],
    path: Path,
    target: str = "t2",
) -> Path:
    """The paper's Figure 4: the mid axial slice of the sources, the real target and each method's
    target, with the tumour outline (segmentation > 0) drawn on every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from datamodules.preprocessing import percentile_scale

    z = (
        int(np.argmax(segmentation.sum(axis=(0, 1))))
        if segmentation is not None and segmentation.any()
        else brain.shape[2] // 2
    )
    panels = {name.upper(): percentile_scale(volume, brain) for name, volume in sources.items()}
    panels[f"real {target.upper()}"] = percentile_scale(real, brain)
    panels.update({name: np.clip(volume, 0, 1) for name, volume in synthetic.items()})
    columns = min(len(panels), 5)
    rows = int(np.ceil(len(panels) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.8 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, (name, volume) in zip(axes.ravel(), panels.items(), strict=False):
        axis.imshow(np.rot90(volume[:, :, z]), cmap="gray", vmin=0, vmax=1)
        if segmentation is not None:
            axis.contour(np.rot90(segmentation[:, :, z] > 0), levels=[0.5], colors="red", linewidths=0.6)
        axis.set_title(name.replace(" (", "\n("), fontsize=7)  # long sweep labels on a second line
    figure.tight_layout()
    with atomic_write(path) as temporary:
        figure.savefig(temporary, dpi=110)
    plt.close(figure)
    return path


# -- rendering -----------------------------------------------------------------------------------


def summary_rows(summary: list[dict[str, Any]], role: str, metrics: Sequence[str]) -> list[list[str]]:
    """Table rows of one role, best first by the first metric."""
    primary, lower = metrics[0], lower_is_better(metrics[0])

    def rank(entry: dict[str, Any]) -> tuple[int, float]:
        mean = entry.get(primary, {}).get("mean")
        return (1, 0.0) if mean is None else (0, mean if lower else -mean)

    entries = sorted((e for e in summary if e["role"] == role), key=rank)
    return [
        [e["method"], str(e["cases"]), *(format_value(e[m]) if m in e else "n/a" for m in metrics)] for e in entries
    ]


def best_of_each_family(summary: list[dict[str, Any]], metric: str = "pct_mse_brain") -> list[str]:
    """The best method of each family on the validation split (test without one), e.g. the best
    Pix2Pix and the best BrainClustering, plus every method that is alone in its family."""
    role, lower = selection_role(summary), lower_is_better(metric)
    best: dict[str, tuple[float, str]] = {}
    for entry in summary:
        mean = entry.get(metric, {}).get("mean")
        if entry["role"] != role or mean is None:
            continue
        name = family(entry["method"])
        if name in best and (mean >= best[name][0] if lower else mean <= best[name][0]):
            continue
        best[name] = (mean, entry["method"])
    return [method for _, method in best.values()]


@dataclass
class Document:
    """Blocks rendered both as Markdown and as HTML."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.blocks.append(("table", (list(header), [list(r) for r in rows])))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("image", (path, caption)))

    def markdown(self, folder: Path) -> str:
        lines = [f"# {self.title}", ""]
        for kind, content in self.blocks:
            if kind == "h2":
                lines += [f"## {content}", ""]
            elif kind == "p":
                lines += [content, ""]
            elif kind == "table":
                header, rows = content
                lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
            else:
                path, caption = content
                lines += [f"![{caption}]({path.relative_to(folder)})", "", f"*{caption}*", ""]
        return "\n".join(lines)

    def html(self, folder: Path) -> str:
        parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(self.title)}</title>",
                 "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
                 "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
                 "td:first-child{text-align:left}img{max-width:100%}</style>",
                 f"<h1>{html.escape(self.title)}</h1>"]  # fmt: skip
        for kind, content in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{html.escape(content)}</h2>")
            elif kind == "p":
                parts.append(f"<p>{html.escape(content)}</p>")
            elif kind == "table":
                header, rows = content
                parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
                parts.append("</table>")
            else:
                path, caption = content
                relative = html.escape(str(path.relative_to(folder)))
                parts.append(f"<figure><img src='{relative}'><figcaption>{html.escape(caption)}</figcaption></figure>")
        return "\n".join(parts)


def build_report(study: Study, output: Path, gallery_volumes: dict[str, Any] | None = None) -> Document:
    """Tables, figures and the best model per metric; figures are written under ``output/figures``."""
    document = Document(f"MRI contrast synthesis: {study.title.replace('->', '→')} study report")
    figures = output / "figures"
    add_runs(document, study)
    add_image_metrics(document, study, figures)
    if study.segmentation_rows:
        add_segmentation_metrics(document, study, figures)
    if gallery_volumes:
        synthetic = {study.short(name): volume for name, volume in gallery_volumes["synthetic"].items()}
        volumes = gallery_volumes | {"synthetic": synthetic}
        path = gallery(**volumes, path=figures / "gallery.png", target=study.target)
        target = study.target.upper()
        document.image(
            path,
            f"Mid-slices: the sources, real {target} and each family's best {target}, tumour outlined "
            "(the paper's Figure 4)",
        )
    return document


def add_runs(document: Document, study: Study) -> None:
    """Which runs the report reads (their legend when they are numbered), what it merged and left out."""
    legend = study.legend()
    if legend:
        document.paragraph(
            f"{len(study.runs)} runs. A run's own model is labelled by the run's number "
            f"({study.short(next(iter(study.run_numbers)))}); its folder name holds the settings it overrides:"
        )
        document.table(["run", "folder (overrides)", "model", "task", "path"], legend)
    else:
        document.paragraph(f"{len(study.runs)} run(s): " + ", ".join(str(run.path) for run in study.runs))
    for sentence in study.merges():
        document.paragraph("Merged: " + sentence)
    for sentence in study.skipped:
        document.paragraph("Not read: " + sentence)


def add_image_metrics(document: Document, study: Study, figures: Path) -> None:
    """The image metrics per role, the best model per metric, and the paper's Figure 6."""
    image_summary = summarise(study.image_rows, metrics=list(METRICS))
    for role in roles_in(study.image_rows):
        document.heading(f"Image metrics, {role} (mean ± sd over cases)")
        document.table(["method", "n", *METRICS], shortened(summary_rows(image_summary, role, METRICS), study))
    add_best_models(document, study, image_summary, METRICS, "Best model per metric")
    add_box_plots(
        document, study, study.image_rows, ("pct_mse_brain", "pct_mse_tumour"), figures / "mse.png", "MSE",
        "MSE in the brain and in the tumour per method ({role}; the paper's Figure 6)",
    )  # fmt: skip


def add_segmentation_metrics(document: Document, study: Study, figures: Path) -> None:
    """The segmentation metrics per role, the best model per metric, and the paper's Figure 7."""
    target = study.target.upper()
    segmentation_summary = summarise(study.segmentation_rows, metrics=[*SEGMENTATION_METRICS, "dice_change_mean"])
    for role in roles_in(study.segmentation_rows):
        document.heading(f"Segmentation with each {target}, {role} (mean ± sd over cases)")
        document.paragraph(
            f"Dice and HD95 (mm) per region; dice_change_mean is the change against the real-{target} "
            f"segmentation (the paper's Table 2; for cases without ground truth the real-{target} "
            "segmentation is the reference)."
        )
        document.table(
            ["method", "n", *SEGMENTATION_REPORTED],
            shortened(summary_rows(segmentation_summary, role, SEGMENTATION_REPORTED), study),
        )
    metrics = ("dice_mean", "hd95_mean")
    add_best_models(document, study, segmentation_summary, metrics, "Best model per segmentation metric")
    add_box_plots(
        document, study, study.segmentation_rows, metrics, figures / "segmentation.png", "Segmentation",
        "Dice and HD95 per method ({role}; the paper's Figure 7)",
    )  # fmt: skip


def add_best_models(
    document: Document, study: Study, summary: list[dict[str, Any]], metrics: Sequence[str], heading: str
) -> None:
    """The model chosen on the validation role for each of ``metrics``, and how it was chosen."""
    document.heading(heading)
    document.paragraph(selection_note(summary))
    choices = best_on_validation(summary, metrics)
    if choices:
        document.table(list(choices[0]), shortened([list(c.values()) for c in choices], study, column=1))


def add_box_plots(
    document: Document, study: Study, rows: list[dict], metrics: Sequence[str], path: Path, title: str, caption: str
) -> None:
    """Box plots of ``metrics`` per method on the test role (or the first role there is), captioned
    ``caption`` with ``{role}`` filled in."""
    role = "test" if "test" in roles_in(rows) else roles_in(rows)[0]
    shown = [{**row, "method": study.short(row["method"])} for row in rows]
    plot = box_plots(shown, metrics, role, path, title)
    if plot:
        document.image(plot, caption.format(role=role))


def shortened(rows: list[list[str]], study: Study, column: int = 0) -> list[list[str]]:
    """Table rows with the method labels of ``column`` shortened (:meth:`Study.short`)."""
    return [[*row[:column], study.short(row[column]), *row[column + 1 :]] for row in rows]


def write_report(document: Document, output: Path) -> tuple[Path, Path]:
    output.mkdir(parents=True, exist_ok=True)
    markdown, page = output / "report.md", output / "report.html"
    with atomic_write(markdown) as temporary:
        temporary.write_text(document.markdown(output))
    with atomic_write(page) as temporary:
        temporary.write_text(document.html(output))
    return markdown, page
