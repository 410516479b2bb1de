"""The tiny demo model, its KTO models and their merges on the demo validation suite (docs/benchmarks.md, `suite`).

Needs the parents trained first (a few CPU minutes each; see training/recipes/tiny/ and
training/recipes/merge/tiny/warp.yaml for the second KTO run):

    python training/sft.py --config training/recipes/tiny/sft.yaml                # models/tiny-tir
    python training/kto_sample.py --config training/recipes/tiny/kto.yaml
    python training/kto.py --config training/recipes/tiny/kto.yaml                # models/tiny-tir-kto
    python training/kto.py --config training/recipes/tiny/kto.yaml --seed 43 --output_dir models/tiny-tir-kto-b \\
        --samples_path models/tiny-tir-kto/samples.jsonl
    python benchmarks/suite.py

It makes every tiny merge (training/merge.py, skipped when the folder exists), then runs
`python -m numina_kit validate --suite configs/suites/demo.yaml` over the parents and the merges with the SFT model
as baseline (resumable: rerun after a crash), and writes the report's tables into docs/benchmarks.md.
"""

import argparse
import sys
import time
from pathlib import Path

import yaml


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
sys.path.insert(0, str(REPO / "benchmarks"))

from _results import write_section  # noqa: E402

from numina_kit.__main__ import main as numina_main  # noqa: E402


PARENTS = {"sft": "models/tiny-tir", "kto": "models/tiny-tir-kto", "kto_b": "models/tiny-tir-kto-b"}
MERGES = ("linear", "slerp", "ties", "dare_ties", "warp")


def make_merges(models_dir: Path) -> dict[str, Path]:
    """Every tiny merge recipe's model (made unless its folder is already there), by recipe name."""
    import merge

    made = {}
    for name in MERGES:
        recipe = merge.read_recipe(REPO / "training" / "recipes" / "merge" / "tiny" / f"{name}.yaml")
        out = models_dir / Path(recipe.output_dir).name
        if not (out / "config.json").is_file():
            argv = ["--config", str(REPO / "training" / "recipes" / "merge" / "tiny" / f"{name}.yaml")]
            argv += ["--output_dir", str(out)]
            for model in recipe.models:
                argv += ["--model", f"{model}={models_dir / Path(PARENTS[model]).name}"]
            if merge.main(argv) != 0:
                raise SystemExit(f"merge {name} failed")
        made[name] = out
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=str(REPO / "models"))
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench-suite"))
    parser.add_argument("--subset", type=int, help="score this many problems of each set (drawn with seed 0)")
    parser.add_argument("--report-only", action="store_true", help="write what the logs hold so far; run nothing")
    args = parser.parse_args()
    models_dir, out = Path(args.models_dir), Path(args.out)
    for path in PARENTS.values():
        if not (models_dir / Path(path).name / "config.json").is_file():
            raise SystemExit(f"{models_dir / Path(path).name} not found: train the parents first (see the docstring)")
    merges = make_merges(models_dir)
    suite = yaml.safe_load((REPO / "configs" / "suites" / "demo.yaml").read_text())
    for entry in suite["sets"]:
        entry["file"] = str(REPO / entry["file"])
        if args.subset:
            entry["subset"] = args.subset
    # the second KTO run is only WARP's parent: scoring it would add minutes and no comparison the issue asks for
    suite["models"] = [str(models_dir / Path(PARENTS[name]).name) for name in ("sft", "kto")]
    suite["models"] += [str(folder) for folder in merges.values()]
    suite["baseline"] = Path(PARENTS["sft"]).name
    out.mkdir(parents=True, exist_ok=True)
    suite_file = out / "suite.yaml"
    suite_file.write_text(yaml.safe_dump(suite, sort_keys=False))
    start = time.perf_counter()
    extra = ["--report-only"] if args.report_only else []
    if numina_main(["validate", "--suite", str(suite_file), "--out", str(out), *extra]) != 0:
        raise SystemExit("validate failed")
    minutes = (time.perf_counter() - start) / 60
    timing = "written from the logs (--report-only)" if args.report_only else f"{minutes:.1f} min for this run"
    report = (out / "report.md").read_text().split("\n", 1)[1]  # drop the report's own title
    report = report.replace("\n## ", "\n#### ").replace(f"{REPO}/", "")  # paths relative to the repository
    sctir = suite["sctir"]
    sizes = f"{args.subset} problems drawn from each" if args.subset else "all problems of both sets"
    body = (
        "The demo model (`models/tiny-tir`, SFT), its KTO model (`tiny-tir-kto`, training/recipes/tiny/kto.yaml) "
        "and the five tiny merges of training/recipes/merge/tiny/ (linear, SLERP, TIES and DARE-TIES of SFT with KTO; "
        "WARP-style: SLERP of the updates of two KTO runs, seeds 42 and 43 on the same samples, then 60% of the way "
        "from SFT; the second run, `tiny-tir-kto-b`, is not scored) on `configs/suites/demo.yaml` (the 50 held-out "
        f"demo problems as two sets; {sizes}), {sctir['num_candidates']} candidates x {sctir['max_rounds']} rounds "
        f"of {sctir['max_new_tokens']} tokens, seeds {suite['seeds']}, by `python -m numina_kit validate` "
        f"({timing}; a rerun resumes from the logs).\n\n"
        "**What this can show at this scale:** that every merge method yields a model that loads and solves problems "
        "through the same SC-TIR loop as its parents, that the suite, its intervals and the paired comparisons work "
        "end to end, and any gross breakage (a merge that destroys the model shows as a collapse in pass@1). "
        "**What it cannot show:** whether merging helps or hurts a real model. The demo model solves its "
        "synthetic arithmetic almost perfectly by copying numbers into code, so maj@k saturates; the KTO runs are "
        "one short epoch on 64 problems; 10-30 problems per set give intervals tens of points wide, so differences "
        "of a few points are noise, and a p-value from a handful of discordant problems means little. Where every "
        "model scores 100% (as here), the intervals collapse to a point and the comparisons rest on zero discordant "
        "problems: a saturated set cannot rank models, which is why Numina validated on AIME and AMC. Numina's "
        "finding (merges regressed on AIME/AMC/MATH) needs the 7B checkpoints on `configs/suites/numina.yaml`.\n\n"
        + report.strip()
    )
    write_section("suite", "Validation suite: tiny parents vs merges", body)
    print(f"wrote the suite section of docs/benchmarks.md ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
