"""Comparing models on a validation suite: the table of models x sets, its plot, and paired comparisons.

Three figures per model and set, each a mean over problems of the problem's mean over seeds, with a 95% percentile
bootstrap interval over problems (`numina_kit.eval.statistics`):
- pass@1: the share of candidates whose answer is right (the model's single-sample accuracy);
- maj@N: the answer SC-TIR votes for is right (what a submission scores);
- pass@N: some candidate is right (the ceiling of a better vote).
Two models are compared on the problems both have finished under every seed (per set, and over all sets pooled):
the difference with a paired bootstrap interval, the problems each model won, and the exact sign test on those. The
report says how many problems every figure and comparison rests on.

`write_suite_report` writes `report.md`, `summary.json` and `suite.png` (matplotlib, Agg backend).
"""

from dataclasses import asdict, dataclass
from pathlib import Path

from numina_kit.data.jsonl import write_json
from numina_kit.eval.report import markdown_table
from numina_kit.eval.results import METRICS, Evaluation
from numina_kit.eval.statistics import Interval, PairedComparison, bootstrap_interval, paired_comparison


REPORT, SUMMARY, PLOT = "report.md", "summary.json", "suite.png"
ALL_SETS = "all sets"
COMPARED = ("maj@k", "pass@1")  # the figures compared pair by pair: what a submission scores, and the finer signal


@dataclass
class Scores:
    """One model on one set: the figures with intervals, over the `n` of `total` problems finished under every seed."""

    model: str
    set: str
    n: int
    total: int
    figures: dict[str, Interval]
    per_problem: dict[str, dict[str, float]]  # metric -> problem id -> value (mean over seeds)


@dataclass
class Comparison:
    """Model `a` against model `b` on one figure, on one set or on all sets pooled."""

    a: str
    b: str
    metric: str
    set: str
    result: PairedComparison


def score(evaluation: Evaluation, set_name: str, total: int) -> Scores:
    """The figures of one model on one set from its (complete) results."""
    per_problem = {metric: evaluation.per_problem(metric) for metric in METRICS}
    figures = {metric: bootstrap_interval(list(values.values())) for metric, values in per_problem.items()}
    n = len(per_problem["maj@k"])
    return Scores(evaluation.model, set_name, n, total, figures, per_problem)


def compare(scores: list[Scores], pairs: list[tuple[str, str]], sets: list[str]) -> list[Comparison]:
    """Every pair on every set and on all sets pooled (a problem is then a (set, problem id) unit), per figure."""
    table = {(s.model, s.set): s for s in scores}
    comparisons = []
    for a, b in pairs:
        for metric in COMPARED:
            for set_name in [*sets, ALL_SETS]:
                chosen = sets if set_name == ALL_SETS else [set_name]
                values = [
                    {
                        (name, pid): value
                        for name in chosen
                        if (model, name) in table
                        for pid, value in table[model, name].per_problem[metric].items()
                    }
                    for model in (a, b)
                ]
                comparisons.append(Comparison(a, b, metric, set_name, paired_comparison(*values)))
    return comparisons


def write_suite_report(
    title: str,
    settings: list[str],
    sets: list[dict],
    models: list[str],
    scores: list[Scores],
    pairs: list[tuple[str, str]],
    out: Path,
    *,
    k: int,
) -> list[Path]:
    """Write report.md, summary.json and suite.png to `out`; `sets` rows have name, source, rule and problems;
    `k` is the number of candidates (the k of maj@k and pass@k in the headings)."""
    set_names = [row["name"] for row in sets]
    comparisons = compare(scores, pairs, set_names)
    paths = [out / REPORT, out / SUMMARY, out / PLOT]
    paths[0].write_text(render_markdown(title, settings, sets, models, scores, comparisons, k=k))
    write_json(
        {
            "title": title,
            "settings": settings,
            "sets": sets,
            "models": models,
            "scores": [
                {"model": s.model, "set": s.set, "n": s.n, "total": s.total}
                | {metric: asdict(interval) for metric, interval in s.figures.items()}
                for s in scores
            ],
            "comparisons": [
                {"a": c.a, "b": c.b, "metric": c.metric, "set": c.set} | asdict(c.result) for c in comparisons
            ],
        },
        paths[1],
    )
    plot_scores(scores, models, set_names, paths[2], title=title, k=k)
    return paths


def render_markdown(
    title: str,
    settings: list[str],
    sets: list[dict],
    models: list[str],
    scores: list[Scores],
    comparisons: list[Comparison],
    *,
    k: int,
) -> str:
    """The report: settings, the sets, one models x sets table per figure, then the paired comparisons."""
    table = {(s.model, s.set): s for s in scores}
    set_names = [row["name"] for row in sets]
    lines = [f"# Validation suite: {title}", "", *[f"- {line}" for line in settings], ""]
    lines += [markdown_table(["set", "source", "rule", "problems"], [list(row.values()) for row in sets]), ""]
    lines += [
        "Each cell: the mean over problems (each problem's value is its mean over the seeds) and its 95% bootstrap "
        "interval over problems. `(n/N)` marks a model that has finished only n of the set's N problems under every "
        "seed; its figures rest on those n.",
        "",
    ]
    for metric, meaning in (
        ("maj@k", "the voted answer is right (what a submission scores)"),
        ("pass@1", "share of candidates with a right answer"),
        ("pass@k", "some candidate is right (the ceiling of a better vote)"),
    ):
        lines += [f"## {label(metric, k)}: {meaning}", ""]
        rows = [[model, *[_cell(table.get((model, name)), metric) for name in set_names]] for model in models]
        lines += [markdown_table(["model", *set_names], rows), ""]
    for metric in COMPARED:
        chosen = [c for c in comparisons if c.metric == metric]
        if not chosen:
            continue
        lines += [
            f"## Paired comparisons on {label(metric, k)}",
            "",
            "A against B on the problems both have finished under every seed (`problems`). A - B is the mean "
            "difference with its 95% paired bootstrap interval; `A better` / `B better` count the problems each "
            "scored higher on; p is the two-sided exact sign test on those counts (McNemar's exact test with one "
            "seed).",
            "",
        ]
        rows = [
            [
                c.a,
                c.b,
                c.set,
                c.result.n,
                _plain(c.result.mean_a),
                _plain(c.result.mean_b),
                c.result.difference.signed_points(),
                c.result.a_better,
                c.result.b_better,
                f"{c.result.p_value:.3g}" if c.result.n else "n/a",
            ]
            for c in chosen
        ]
        headers = ["A", "B", "set", "problems", "A", "B", "A - B [95% CI]", "A better", "B better", "p"]
        lines += [markdown_table(headers, rows), ""]
    return "\n".join(lines)


def plot_scores(scores: list[Scores], models: list[str], sets: list[str], path: Path, *, title: str, k: int) -> None:
    """One panel per figure: a bar per model for each set, with its bootstrap interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = {(s.model, s.set): s for s in scores}
    figure, panels = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS) + 1, 4), sharey=True)
    width = 0.8 / max(len(models), 1)
    for panel, metric in zip(panels, METRICS, strict=True):
        for i, model in enumerate(models):
            xs, heights, errors = [], [], [[], []]
            for j, name in enumerate(sets):
                cell = table.get((model, name))
                if cell is None or cell.n == 0:
                    continue
                interval = cell.figures[metric]
                xs.append(j - 0.4 + width * (i + 0.5))
                heights.append(100 * interval.estimate)
                errors[0].append(100 * (interval.estimate - interval.low))
                errors[1].append(100 * (interval.high - interval.estimate))
            panel.bar(xs, heights, width, yerr=errors, capsize=2, label=model)
        panel.set_xticks(range(len(sets)), sets, rotation=20)
        panel.set_title(label(metric, k))
        panel.set_ylim(0, 105)
        panel.grid(axis="y", alpha=0.3)
    panels[0].set_ylabel("accuracy (%), 95% bootstrap interval")
    handles, names = panels[0].get_legend_handles_labels()
    figure.legend(handles, names, loc="lower center", ncol=min(len(models), 6), fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout(rect=(0, 0.05 + 0.04 * ((len(models) - 1) // 6), 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def label(metric: str, k: int) -> str:
    """A figure's name with its k: `maj@k` with 48 candidates is maj@48."""
    return metric.replace("@k", f"@{k}")


def _cell(scores: Scores | None, metric: str) -> str:
    if scores is None or scores.n == 0:
        return "not run"
    text = scores.figures[metric].percent()
    return text if scores.n == scores.total else f"{text} ({scores.n}/{scores.total})"


def _plain(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"
