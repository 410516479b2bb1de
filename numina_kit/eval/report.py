"""Evaluation reports: an `Evaluation` written as JSON, Markdown and a plot of accuracy against candidates voted.

`write_report(evaluation, out)` writes `results.json` (settings, summary, curve, one row per problem and seed),
`report.md` (the same for people), and `accuracy_vs_candidates.png` (matplotlib, Agg backend, so it works on a
machine without a display). `evaluate` appends `solutions.jsonl` with every candidate's text beside them.
"""

import json
import math
from dataclasses import asdict
from pathlib import Path

from numina_kit.eval.results import Evaluation


RESULTS, MARKDOWN, PLOT = "results.json", "report.md", "accuracy_vs_candidates.png"


def write_report(evaluation: Evaluation, out: Path, *, plot: bool = True) -> list[Path]:
    """Write the three report files into `out` (created if needed; the plot only with `plot`) and return their
    paths."""
    out.mkdir(parents=True, exist_ok=True)
    curves = {seed: evaluation.accuracy_by_candidates(seed) for seed in evaluation.seeds}
    mean_curve = evaluation.accuracy_by_candidates()
    results = {
        "data": evaluation.data,
        "model": evaluation.model,
        "seeds": evaluation.seeds,
        "config": asdict(evaluation.config),
        "summary": evaluation.summary(),
        "accuracy_by_candidates": {"mean": mean_curve, **{str(seed): curve for seed, curve in curves.items()}},
        "problems": [asdict(row) for row in evaluation.results],
    }
    paths = [out / RESULTS, out / MARKDOWN]
    paths[0].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths[1].write_text(render_markdown(evaluation, mean_curve))
    if plot:
        paths.append(out / PLOT)
        plot_curves(curves, mean_curve, paths[2], title=f"{Path(evaluation.data).name}: accuracy vs candidates voted")
    return paths


def render_markdown(evaluation: Evaluation, curve: dict[int, float]) -> str:
    """The report as Markdown: settings, headline figures, the curve and a per-problem table."""
    config, summary = evaluation.config, evaluation.summary()
    n = config.num_candidates
    lines = [
        f"# SC-TIR evaluation: {Path(evaluation.data).name}",
        "",
        f"Model `{evaluation.model}`, {summary['problems']} problems, seeds {', '.join(map(str, evaluation.seeds))}; "
        f"{n} candidates x {config.max_rounds} rounds, temperature {config.temperature}, "
        f"{config.max_new_tokens} tokens per round, competition `{config.competition}`, "
        f"code {'executed' if config.execute_code else 'NOT executed (--no-code)'}.",
        "",
        markdown_table(
            ["seed", f"maj@{n}", f"pass@{n}"],
            [[seed, percent(s["maj"]), percent(s["pass"])] for seed, s in summary["per_seed"].items()]
            + [["mean", percent(summary[f"maj@{n}"]), percent(summary[f"pass@{n}"])]],
        ),
        "",
        f"- answers from code: {percent(summary['answers_from_code'])} of "
        f"{summary['valid_answers_per_problem']:.1f} valid answers per problem; fallback answer on "
        f"{percent(summary['fallback_share'])} of problems",
        f"- per problem: {summary['seconds_per_problem']:.1f} s ({summary['generation_s_per_problem']:.1f} s "
        f"generating, {summary['execution_s_per_problem']:.1f} s running code), "
        f"{summary['tokens_per_problem']:.0f} tokens generated, {summary['rounds_per_problem']:.2f} rounds",
        "",
        "## Accuracy against candidates voted",
        "",
        markdown_table(["candidates", "maj@k (mean over seeds)"], [[k, percent(v)] for k, v in curve.items()]),
        "",
        "## Problems",
        "",
    ]
    rows = []
    for problem_id in dict.fromkeys(r.id for r in evaluation.results):
        mine = [r for r in evaluation.results if r.id == problem_id]
        rows.append(
            [
                problem_id,
                mine[0].reference,
                " / ".join(str(r.answer) + ("*" if r.is_fallback else "") for r in mine),
                f"{sum(r.correct for r in mine)}/{len(mine)}",
                f"{sum(r.passed for r in mine)}/{len(mine)}",
                f"{sum(r.num_valid for r in mine) / len(mine):.1f}",
                f"{sum(r.total_s for r in mine) / len(mine):.1f}",
                f"{sum(r.generated_tokens for r in mine) / len(mine):.0f}",
            ]
        )
    lines.append(
        markdown_table(["id", "reference", "answer per seed", "correct", "pass", "valid answers", "s", "tokens"], rows)
    )
    lines += ["", "`*` marks the fallback answer (no candidate gave a valid one)."]
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[int, dict[int, float]], mean: dict[int, float], path: Path, *, title: str) -> None:
    """Accuracy against the number of candidates voted, one thin line per seed and the mean in bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for seed, curve in curves.items():
        axes.plot(list(curve), [100 * v for v in curve.values()], marker=".", alpha=0.4, label=f"seed {seed}")
    axes.plot(list(mean), [100 * v for v in mean.values()], marker="o", color="black", linewidth=2, label="mean")
    axes.set_xscale("log", base=2)
    ks = list(mean)
    axes.set_xticks(ks, [str(k) for k in ks])
    axes.set_xlabel("candidates voted (k)")
    axes.set_ylabel("maj@k accuracy (%)")
    axes.set_ylim(0, max(5, math.ceil(max([100 * v for v in mean.values()] + [0]) / 10) * 10 + 5))
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)
