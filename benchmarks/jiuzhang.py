"""Benchmark of JiuZhang3.0-style synthesis (numina_kit.data.jiuzhang, .verification, .influence, training/jiuzhang_*.py).

- Verification on real data: every row of JiuZhang3.0's released PT-Tool sample (../shared/data/jiuzhang3/,
  700 rows) through our tool-solution check: each code block run in order in one interpreter (and, for the block
  counts, also each block alone), its recorded output compared with what it prints, the row kept only when no block
  fails and its `\\boxed{}` answer agrees with the last real output. Baseline: the rows as released (all kept).
- Format compatibility: the three released samples (PT-CoT, PT-Tool, SFT) read by training/sft.py's data loading as
  raw prompt/completion pairs, and the schema of the rows our pipeline writes.
- The toy end-to-end run (training/jiuzhang_toy.py): influence-selected against random boost texts, over seeds; its
  results are read from `<workdir>/results.json`, or the run is started when that file is missing; `--partial`
  reports what an unfinished run left in its workdir.

Run: `python benchmarks/jiuzhang.py [--workdir outputs/jiuzhang_toy] [--part replay|toy]` (writes the sections
`jiuzhang_replay` and `jiuzhang_toy` of docs/benchmarks.md).
"""

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "training"))

from _results import markdown_table, write_section  # noqa: E402

from numina_kit.data.jsonl import read_jsonl  # noqa: E402
from numina_kit.data.stages import Rejected, split_blocks  # noqa: E402
from numina_kit.data.verification import verify_tool_solution  # noqa: E402
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox  # noqa: E402


DATA = REPO.parent / "shared" / "data" / "jiuzhang3"


def replay(rows: list[dict]) -> tuple[list[list[object]], Counter, dict]:
    """Per-block and per-row results of our verification on the released tool rows."""
    blocks = Counter()
    outcomes = Counter()
    start = time.perf_counter()
    with (
        Sandbox(ExecutorConfig(timeout=5.0, stateful=True)) as in_order,
        Sandbox(ExecutorConfig(timeout=5.0)) as alone,
    ):
        for number, row in enumerate(rows):
            try:
                pieces = split_blocks(row["output"])
            except Rejected as rejection:
                outcomes[rejection.reason] += 1
                continue
            for i, (kind, code) in enumerate(pieces):
                if kind != "code":
                    continue
                claimed = pieces[i + 1][1].strip() if i + 1 < len(pieces) and pieces[i + 1][0] == "output" else None
                blocks["blocks"] += 1
                for mode, sandbox in (("in order", in_order), ("alone", alone)):
                    result = sandbox.run(code, key=f"b{number}")
                    blocks[f"{mode}: ran"] += result.status == "ok"
                    blocks[f"{mode}: printed the recorded output"] += result.output.strip() == claimed
            in_order.forget(f"b{number}")
            try:
                verified = verify_tool_solution(row["output"], in_order, key=f"r{number}")
                outcomes["kept"] += 1
                outcomes["kept, with claims replaced"] += verified.claims_wrong > 0
            except Rejected as rejection:
                outcomes[rejection.reason] += 1
    table = [
        [mode, blocks["blocks"], blocks[f"{mode}: ran"], blocks[f"{mode}: printed the recorded output"]]
        for mode in ("alone", "in order")
    ]
    return table, outcomes, {"seconds": time.perf_counter() - start, "rows": len(rows)}


def formats() -> list[list[object]]:
    """Each released sample through training/sft.py's loading: rows, columns after rendering, a prompt's ending."""
    from data import DataArguments, load_rows, render_prompt_completion

    table = []
    for name in ("pt_cot_sample.jsonl", "pt_tool_sample.jsonl", "sft_sample.jsonl"):
        rows = load_rows(DataArguments(dataset_name=str(DATA / name)))["train"]
        rendered = render_prompt_completion(rows, "</s>")
        ending = rendered[0]["prompt"].rsplit("\n\n", 1)[-1].strip()
        table.append([f"`{name}`", rendered.num_rows, ", ".join(rendered.column_names), f"`{ending}`"])
    return table


def toy(workdir: Path, partial: bool = False) -> dict:
    """The toy run's results; with `partial`, what a run that did not finish left in its workdir, never a new run."""
    results = workdir / "results.json"
    if partial and not results.exists():
        return unfinished(workdir)
    if not results.exists():
        import jiuzhang_toy

        jiuzhang_toy.main(jiuzhang_toy.ToyArguments(workdir=str(workdir)))
    return json.loads(results.read_text())


def unfinished(workdir: Path) -> dict:
    """What an unfinished toy run wrote: its stages' times (`progress.json`), its selection (if it got that far),
    the initial synthesis model's candidate rows and the (seed, arm) runs that finished (`arm_<arm>_<seed>.json`)."""
    found = {}
    for name in ("progress.json", "selection_summary.json"):  # the stages' times so far; the selection, when made
        if (workdir / name).exists():
            found |= json.loads((workdir / name).read_text())
    candidates = workdir / "candidates.stats.json"
    if candidates.exists():
        found["candidates"] = json.loads(candidates.read_text())
    found["finished_arms"] = [
        json.loads(f.read_text()) | {"arm": f.stem.split("_")[1]} for f in sorted(workdir.glob("arm_*_*.json"))
    ]
    if (workdir / "candidates.jsonl").exists():
        from numina_kit.data.toy import is_relevant, make_corpus

        args = found["arguments"]
        texts = {
            t.id: t
            for t in make_corpus(args["corpus_size"], relevant_share=args["relevant_share"], seed=args["corpus_seed"])
        }
        written = {row["text_id"] for row in read_jsonl(workdir / "candidates.jsonl")}
        found["candidate_texts"] = len(written)
        found["relevant_candidate_texts"] = sum(is_relevant(texts[i]) for i in written)
    found["workdir"] = str(workdir)
    return found


def selection_line(selection: dict) -> str:
    return (
        f"Selection: {selection['relevant_selected']} of the {selection['selected']} selected texts are on the "
        f"target topic, against {selection['relevant_among_them']} of {selection['candidate_texts_with_rows']} "
        f"candidates ({selection['relevant_among_them'] / selection['candidate_texts_with_rows']:.0%}); "
        f"hypergeometric p = {selection['hypergeometric_p']:.1e}."
    )


def partial_section(results: dict) -> str:
    """A run that did not finish: the initial synthesis model's usable rows, the selection if made, the (seed, arm)
    runs that finished, and the time of what ran; no influence-against-random verdict."""
    if "arguments" not in results:
        return "Toy run (`training/jiuzhang_toy.py`): no stage up to the selection finished; nothing to report."
    args, candidates = results["arguments"], results.get("candidates", {})
    texts = args["corpus_size"] - args["initial_texts"]
    body = (
        f"Toy run (`training/jiuzhang_toy.py`) **unfinished**: the comparison of influence-boosted against "
        f"random-boosted final models is not complete, so it is not claimed. Sizes: a generated corpus of "
        f"{args['corpus_size']} passages on 8 topics, {args['relevant_share']:.0%} on the target topic; a toy base "
        f"model of {args['base_passages']} toy passages, each with its problem, and {args.get('base_problems', 0)} others "
        f"({overrides(args['base_flags'])}); the scripted teacher (standing in for "
        f"GPT-4) writes about {args['initial_texts']} random texts; the initial synthesis model "
        f"({overrides(args['synthesis_flags'])}, {args['max_new_tokens']} new tokens per loop round) writes about the other "
        f"{texts}; LESS (real per-sample LoRA gradients, {overrides(args['select_flags'])}) ranks "
        f"them against {args['target_train']} target training problems and picks B = {args['budget']}.\n\n"
    )
    if candidates:
        dropped = ", ".join(
            f"{reason} {n}" for reason, n in sorted(candidates["dropped"].items(), key=lambda x: -x[1])
        )
        body += (
            f"Initial synthesis model: {candidates['kept']} usable rows of {candidates['requests']} requests "
            f"({candidates['kept'] / max(candidates['requests'], 1):.0%}); dropped: {dropped or 'none'}.\n\n"
        )
    if "selection" in results:
        body += selection_line(results["selection"]) + "\n\n"
    elif "candidate_texts" in results:
        body += (
            f"**Stopped before the selection**: the initial synthesis model wrote usable rows for "
            f"{results['candidate_texts']} candidate texts ({results['relevant_candidate_texts']} on the target "
            f"topic), no more than B = {args['budget']}, so the run stopped there in one line (a selection of B among them chooses nothing).\n\n"
        )
    arms = results.get("finished_arms", [])
    if arms:
        rows = [[a["arm"], a["seed"], f"{a['accuracy']:.1%}", f"{sum(a['seconds'].values()) / 60:.0f}"] for a in arms]
        body += "Finished (seed, arm) runs:\n\n" + markdown_table(
            ["boost", "seed", "held-out accuracy", "minutes"], rows
        )
        body += "\n\n"
    else:
        body += "No (seed, arm) run finished.\n\n"
    stages = [[name, f"{seconds / 60:.1f}"] for name, seconds in results.get("stage_seconds", {}).items()]
    if stages:
        body += (
            f"Time of the shared stages that ran ({results.get('wall_seconds', 0) / 60:.0f} minutes of wall time, on "
            "the machine above, 2 cores shared with whatever else ran; the (seed, arm) runs' own time is above):"
            "\n\n" + markdown_table(["stage", "minutes"], stages)
        )
    return body


def overrides(flags: str) -> str:
    return f"recipe overrides `{flags}`" if flags else "the tiny recipe as it is"


def toy_section(results: dict) -> str:
    if "arms" not in results:
        return partial_section(results)
    arms, selection, args = results["arms"], results["selection"], results["arguments"]
    rows = []
    for arm in ("influence", "random"):
        for run in arms[arm]:
            rows.append([arm, run["seed"], f"{run['boost']['relevant_rows']} / {run['boost']['rows']}",
                         f"{run['final_data']['relevant_rows']} / {run['final_data']['rows']}", f"{run['accuracy']:.1%}"])  # fmt: skip
    summary = results["summary"]
    means = [
        [arm, f"{summary[arm]['accuracy_mean']:.1%}", f"{summary[arm]['accuracy_stdev']:.1%}", len(arms[arm])]
        for arm in ("influence", "random")
    ]
    stages = [[name, f"{seconds / 60:.1f}"] for name, seconds in results["stage_seconds"].items()]
    influence, random_ = summary["influence"], summary["random"]
    gap = influence["accuracy_mean"] - random_["accuracy_mean"]
    spread = max(influence["accuracy_stdev"], random_["accuracy_stdev"])
    verdict = (
        "ahead of random by more than the spread across seeds"
        if gap > spread
        else "ahead of random, but by less than the spread across seeds (not shown at this size)"
        if gap > 0
        else "not ahead of random (the advantage is not shown at this size)"
    )
    processes = results.get("processes", 1)
    whole = results["total_seconds"] / 60  # every run in the workdir, resumed ones included (progress.json)
    return (
        f"Toy run (`training/jiuzhang_toy.py`, {whole:.0f} minutes wall time on the machine above"
        + f"; after the shared stages the (seed, arm) pairs ran {processes} at a time in their own processes, the cores shared out between them): a generated corpus of {args['corpus_size']} passages on 8 topics, "
        f"{args['relevant_share']:.0%} on the target topic (remainders of products and powers modulo 1000); a "
        "scripted teacher standing in for GPT-4 (deterministic, served over HTTP; some replies malformed or with "
        "wrong claimed outputs); tiny Llama models fine-tuned from a toy base model that never saw the target topic "
        f"({args['base_passages']} passages of the other topics, each followed by the problem written from it, "
        f"and {args.get('base_problems', 0)} worked problems of the demo's other kinds). "
        f"The teacher writes about {args['initial_texts']} random texts; the initial synthesis model writes about "
        f"the rest; LESS ranks those texts against {args['target_train']} target training problems; the boost round "
        f"sends B = {args['budget']} texts to the teacher, chosen by influence or at random (the baseline); each "
        "boosted synthesis model writes the final model's data about every text, and the final model is scored "
        f"with SC-TIR (one greedy candidate) on {args['target_test']} held-out target problems. Overrides of the "
        f"tiny recipes: base `{args['base_flags']}`, synthesis `{args['synthesis_flags']}`, selection "
        f"`{args['select_flags']}`, final `{args['final_flags']}`.\n\n"
        + selection_line(selection)
        + "\n\n"
        + markdown_table(["boost", "seed", "relevant boost rows", "relevant final rows", "held-out accuracy"], rows)
        + "\n\n"
        + markdown_table(["boost", "accuracy mean", "stdev", "seeds"], means)
        + f"\n\nFinal models: influence-boosted {influence['accuracy_mean']:.1%} against random-boosted "
        f"{random_['accuracy_mean']:.1%}, {verdict}.\n\nTime per stage (minutes, summed over all seeds' processes):\n\n"
        + markdown_table(["stage", "minutes"], stages)
    )


def replay_section() -> str:
    rows = read_jsonl(DATA / "pt_tool_sample.jsonl")
    blocks, outcomes, info = replay(rows)
    kept = outcomes.pop("kept", 0)
    replaced = outcomes.pop("kept, with claims replaced", 0)
    return (
        f"Verification of JiuZhang3.0's released PT-Tool sample ({info['rows']} rows, "
        f"{info['seconds']:.0f} s): the rows as released are all kept (baseline); ours keeps **{kept} of "
        f"{info['rows']}**, {replaced} of them with recorded outputs replaced by what the code prints.\n\n"
        + markdown_table(["code blocks run", "blocks", "ran without error", "printed their recorded output"], blocks)
        + "\n\n"
        + markdown_table(["rows dropped because", "rows"], [[f"`{k}`", v] for k, v in outcomes.most_common()])
        + "\n\nFormat: the released samples read by `training/sft.py` as raw prompt/completion pairs (loss on the "
        "completion), the schema our pipeline writes (`input`, `output`, plus `text_id` and `stage`):\n\n"
        + markdown_table(["sample", "rows", "columns", "prompt ends"], formats())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "jiuzhang_toy"))
    parser.add_argument("--part", choices=["all", "replay", "toy"], default="all")
    parser.add_argument(
        "--partial",
        action="store_true",
        help="report what an unfinished toy run left in its workdir (never start one)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.part in ("all", "replay"):
        if DATA.exists():
            body = replay_section()
            write_section("jiuzhang_replay", "JiuZhang3.0: replay of the released tool data", body)
            print(body)
        else:
            print(f"skipped the replay: {DATA} is absent (the released samples are not part of the project)")
    if args.part in ("all", "toy"):
        body = toy_section(toy(Path(args.workdir), partial=args.partial))
        write_section("jiuzhang_toy", "JiuZhang3.0: toy run, influence against random selection", body)
        print(body)


if __name__ == "__main__":
    main()
