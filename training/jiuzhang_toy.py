"""The whole JiuZhang3.0 pipeline at toy scale on a CPU, with influence selection against random selection.

    python training/jiuzhang_toy.py --workdir outputs/jiuzhang_toy --processes 2   # see docs/jiuzhang3.md
    python training/jiuzhang_toy.py --corpus_size 600 --seeds 1 ...        # a smaller run (the slow test)

What is real and what stands in: the corpus is generated (`numina_kit.data.toy.make_corpus`: passages on eight
topics, a minority on the target task's topic) and the teacher is a scripted stand-in for GPT-4
(`numina_kit.data.toy.ScriptedTeacher`, served over HTTP and called through the real client). Everything else is
the pipeline itself: the requests, the parsing, the sandbox executing every tool solution, the tiny synthesis model
trained with training/sft.py, LESS influence from real per-sample gradients of a LoRA reference model
(training/jiuzhang_select.py), the boost round, synthesis at scale with the trained model, and the final tiny model
trained on the synthesized data and evaluated with SC-TIR on held-out target problems (`problems` kinds `product`
and `power` with small numbers, never seen in training; the influence targets are a disjoint training split).

Every model starts from a toy base model trained once on passages of the irrelevant topics, each followed by the
worked problem written from it, and on worked problems of the demo's kinds other than the target's (a stand-in for
the pretrained LM the paper starts from: no model could learn to read and copy from a few hundred rows).
Stages 1-3 (initial distillation, the initial synthesis model, its candidate data and the selection) run once;
for each seed, the boost round runs twice, with the top-B texts by influence and with B random texts, and each
boosted synthesis model writes the final model's data. Results go to `<workdir>/results.json`, the stages' times
so far to `<workdir>/progress.json`. A rerun of a workdir reuses a stage only if its key (recipe, input data, seed,
flags, upstream model) is the one recorded in `<workdir>/stages/`; otherwise the stage is redone. With the defaults
the influence-boosted final models beat the random-boosted ones in each of 3 seeds (docs/jiuzhang3.md: 67.8% against
36.7% mean held-out accuracy; 113 minutes on 2 cores with `--processes 2`).
"""

import hashlib
import json
import logging
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from components import run_script
from trl import TrlParser

from numina_kit.data.corpus import Text
from numina_kit.data.decontamination import build_index
from numina_kit.data.influence import hypergeometric_tail
from numina_kit.data.jiuzhang import WritingConfig, write_problems
from numina_kit.data.jsonl import read_jsonl, write_json, write_jsonl
from numina_kit.data.ledger import OutputPaths
from numina_kit.data.teacher import HTTPTeacher, TeacherConfig
from numina_kit.data.toy import ScriptedTeacher, base_rows, is_relevant, make_corpus, target_problems
from numina_kit.errors import InputError
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from numina_kit.sctir.loop import SCTIRConfig, solve
from numina_kit.testing import OpenAIServer


logger = logging.getLogger("jiuzhang_toy")
RECIPES = Path(__file__).resolve().parent / "recipes" / "jiuzhang"


@dataclass
class ToyArguments:
    """Sizes of the toy run; the models' settings are the tiny recipes', with `*_flags` added on top."""

    workdir: str = "outputs/jiuzhang_toy"
    corpus_size: int = 500
    relevant_share: float = 0.1
    corpus_seed: int = 0
    initial_texts: int = 80  # the teacher's initial distillation texts (the paper: 5.3k)
    budget: int = 40  # B, texts of the boost round (the paper: 4k)
    target_train: int = 24  # influence targets: the target task's training split
    target_test: int = 30  # held-out target problems the final models are scored on
    base_passages: int = 1500  # the base model's pre-training passages (irrelevant topics only)
    base_problems: int = 6000  # and worked problems of the demo's kinds other than the target's
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])
    base_flags: str = ""  # recipe overrides, e.g. "--num_train_epochs 2"
    synthesis_flags: str = ""
    select_flags: str = ""
    final_flags: str = ""
    max_new_tokens: int = 160  # per round of the synthesis model (problem + code: up to ~100 toy tokens)
    arms: list[str] = field(default_factory=lambda: ["influence", "random"])
    processes: int = 1  # after the shared stages, the (seed, arm) runs go this many at once, each in its own process


def digest(value) -> str:
    """A short fingerprint of a file's bytes (a Path) or of a JSON-able value."""
    data = value.read_bytes() if isinstance(value, Path) else json.dumps(value, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()[:16]


class Toy:
    """The run's fixed parts (corpus, teacher, sandbox, target problems) and its stages as methods."""

    def __init__(
        self, args: ToyArguments, teacher: HTTPTeacher, sandbox: Sandbox, started: float | None = None
    ) -> None:
        self.args, self.teacher, self.sandbox = args, teacher, sandbox
        self.work = Path(args.workdir)
        self.texts = make_corpus(args.corpus_size, relevant_share=args.relevant_share, seed=args.corpus_seed)
        self.by_id = {t.id: t for t in self.texts}
        test = target_problems(args.target_test, seed=1000)
        train = target_problems(args.target_train, seed=2000, exclude={p.problem for p in test})
        self.test = test
        write_jsonl([p.to_row() for p in test], self.work / "held_out.jsonl")
        self.targets = write_jsonl(
            [{"input": f"### Problem: {p.problem}\n### Solution: ", "output": p.solution} for p in train],
            self.work / "targets.jsonl",
        )
        self.eval_index = build_index([p.problem for p in test])
        self.timings: dict[str, float] = {}
        self.keys: dict[str, str] = {}  # each stage's key digest this run, by its output's name
        # stage times of earlier runs in this workdir (a resumed run adds its own): what an unfinished run reports
        self.progress = self.work / "progress.json"
        earlier = json.loads(self.progress.read_text()) if self.progress.exists() else {}
        self.earlier, self.earlier_wall = earlier.get("stage_seconds", {}), earlier.get("wall_seconds", 0.0)
        self.start = time.monotonic() if started is None else started  # when this run began
        # the teacher writes whole replies, as a chat model does; its claimed outputs are checked afterwards
        self.teacher_config = WritingConfig(rows="request", tool_execution="after")

    def timed(self, name: str, function, *args, **kwargs):
        start = time.monotonic()
        result = function(*args, **kwargs)
        self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - start
        if self.is_parent:
            progress = {"arguments": asdict(self.args), "stage_seconds": self.stage_seconds()}
            write_json(progress | {"wall_seconds": self.wall_seconds()}, self.progress)
        return result

    @property
    def is_parent(self) -> bool:
        """Whether this is the run's own process (a child process running one arm writes only its arm_*.json)."""
        return set(self.args.arms) == {"influence", "random"}

    def stage_seconds(self) -> dict[str, float]:
        """Each stage's time so far, the earlier runs' in this workdir included."""
        return self.earlier | {k: round(self.earlier.get(k, 0.0) + v, 1) for k, v in self.timings.items()}

    def wall_seconds(self) -> float:
        """Wall time so far, the earlier runs' in this workdir included."""
        return round(self.earlier_wall + time.monotonic() - self.start, 1)

    def claim(self, stage: str, key: dict, outputs: list[Path]) -> str:
        """Record what determines `stage`'s output (its key) and return the key's digest, for the stages after it.

        A rerun reuses or resumes a stage's `outputs` only when they were made with the same key; made with another
        (a changed recipe flag, other input data, a retrained model upstream) or with none recorded (a run before
        stage keys), they are deleted and the stage is redone, so a rerun never reports an old model's output under
        new settings.
        """
        record = self.work / "stages" / f"{stage}.json"
        earlier = json.loads(record.read_text())["key"] if record.exists() else None
        if earlier != key and any(path.exists() for path in outputs):
            changed = sorted(k for k in key.keys() | (earlier or {}).keys() if key.get(k) != (earlier or {}).get(k))
            logger.warning(
                "%s: made with %s; redoing it", stage, f"other {', '.join(changed)}" if earlier else "no key"
            )
            for path in outputs:
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        if self.is_parent or earlier != key:  # an arm's process writes only its own stages' keys
            write_json({"key": key}, record)
        return digest(key)

    def teach(self, texts: list[Text], name: str) -> Path:
        """The teacher writes distillation rows (request -> reply) about `texts`."""
        paths = OutputPaths.beside(self.work / f"{name}.jsonl")
        # the scripted teacher is deterministic: its rows depend on the texts only
        key = {"texts": digest([t.id for t in texts])}
        self.keys[paths.output.name] = self.claim(paths.output.name, key, [*vars(paths).values()])
        write_problems(texts, self.teacher, self.teacher_config, paths, sandbox=self.sandbox)
        return paths.output

    def train(self, recipe: str, data: Path, output: str, seed: int, flags: str) -> Path:
        """Train with a tiny recipe (sft.py); every model but the base one starts from the base model.

        A model already trained in this workdir (its `config.json` written) is reused: a rerun resumes the run.
        """
        import sft

        key = {"recipe": digest(RECIPES / recipe), "data": digest(data), "seed": seed, "flags": flags}
        if recipe != "base_tiny.yaml":
            key["base"] = self.keys["base"]
        self.keys[output] = self.claim(output, key, [self.work / output])
        if (self.work / output / "config.json").exists():
            return self.work / output
        argv = [
            "--config",
            str(RECIPES / recipe),
            "--dataset_name",
            str(data),
            "--output_dir",
            str(self.work / output),
        ]
        if recipe != "base_tiny.yaml":
            argv += ["--model_name_or_path", str(self.work / "base")]
        argv += ["--seed", str(seed), *shlex.split(flags)]
        return sft.main(*sft.make_parser().parse_args_and_config(argv))

    def synthesize(self, model: Path, texts: list[Text], name: str, seed: int) -> Path:
        """The synthesis model writes final-model rows (problem -> checked tool solution) about `texts`."""
        from numina_kit.models.load import load_generator

        writer = load_generator(model, backend="hf", batch_size=64)
        config = WritingConfig(
            rows="problem",
            max_new_tokens=self.args.max_new_tokens,
            tool_rounds=3,
            max_context_tokens=500,  # the base model's context is 512
            batch_size=128,
            seed=seed,
        )
        paths = OutputPaths.beside(self.work / f"{name}.jsonl")
        key = {"model": self.keys[model.name], "texts": digest([t.id for t in texts]), "config": repr(config)}
        self.keys[paths.output.name] = self.claim(paths.output.name, key, [*vars(paths).values()])
        write_problems(texts, writer, config, paths, sandbox=self.sandbox, eval_index=self.eval_index)
        return paths.output

    def select(self, model: Path, candidates: Path, exclude: Path) -> list[str]:
        """LESS selection of B texts (training/jiuzhang_select.py); an earlier run's selection.json is reused."""
        import jiuzhang_select

        key = {"model": self.keys[model.name], "candidates": digest(candidates), "targets": digest(self.targets)}
        key |= {"exclude": digest(exclude), "budget": self.args.budget, "flags": self.args.select_flags}
        key["recipe"] = digest(RECIPES / "select_tiny.yaml")
        self.claim("selection", key, [self.work / "selection.json", self.work / "reference"])
        if (self.work / "selection.json").exists():
            return json.loads((self.work / "selection.json").read_text())["selected"]
        argv = ["--config", str(RECIPES / "select_tiny.yaml"), "--model_name_or_path", str(model)]
        argv += ["--candidates", str(candidates), "--targets", str(self.targets), "--exclude", str(exclude)]
        argv += ["--budget", str(self.args.budget), "--output_dir", str(self.work / "reference")]
        argv += ["--selection", str(self.work / "selection.json"), *shlex.split(self.args.select_flags)]
        return jiuzhang_select.main(*jiuzhang_select.make_parser().parse_args_and_config(argv))["selected"]

    def score(self, model: Path) -> float:
        """Accuracy of a final model on the held-out target problems: SC-TIR, one greedy candidate, 3 rounds."""
        from numina_kit.models.load import load_generator

        generator = load_generator(model, backend="hf", batch_size=8)
        config = SCTIRConfig(num_candidates=1, max_rounds=3, temperature=0.0, max_new_tokens=96, competition="aimo1")
        right = sum(solve(p.problem, generator, config, executor=self.sandbox).answer == p.answer for p in self.test)
        return right / len(self.test)


def relevant_share(rows_file: Path, by_id: dict[str, Text]) -> dict:
    rows = read_jsonl(rows_file)
    relevant = sum(is_relevant(by_id[r["text_id"]]) for r in rows)
    return {"rows": len(rows), "relevant_rows": relevant}


def run_arm(toy: Toy, arm: str, seed: int, distill: Path, influence_boost: Path, pool: list[str], budget: int) -> dict:
    """One boost arm for one seed: boost rows, synthesis model, final data, final model, its score.

    The result (with the arm's own stage times) is kept in `arm_<arm>_<seed>.json`; a rerun reuses it.
    """
    tag = f"{arm}_{seed}"
    done = toy.work / f"arm_{tag}.json"
    key = {"distill": digest(distill), "boost": digest(influence_boost) if arm == "influence" else digest(pool)}
    key |= {name: getattr(toy.args, name) for name in ("synthesis_flags", "final_flags", "max_new_tokens")}
    key |= {"base": toy.keys["base"], "budget": budget, "recipes": digest(RECIPES / "final_tiny.yaml")}
    key["recipes"] += digest(RECIPES / "synthesis_tiny.yaml")
    toy.claim(f"arm_{tag}", key, [done])  # a finished arm is reused only with the same inputs and settings
    if done.exists():
        return json.loads(done.read_text())
    before = dict(toy.timings)
    if arm == "influence":
        boost = influence_boost
    else:
        random_ids = random.Random(seed).sample(pool, budget)
        boost = toy.timed("teacher calls", toy.teach, [toy.by_id[i] for i in random_ids], f"boost_random_{seed}")
    data = write_jsonl(read_jsonl(distill) + read_jsonl(boost), toy.work / f"synthesis_train_{tag}.jsonl")
    synth = toy.timed(
        "synthesis model training",
        toy.train,
        "synthesis_tiny.yaml",
        data,
        f"synth_{tag}",
        seed,
        toy.args.synthesis_flags,
    )
    final_rows = toy.timed("synthesis", toy.synthesize, synth, toy.texts, f"final_{tag}", seed)
    final = toy.timed(
        "final model training", toy.train, "final_tiny.yaml", final_rows, f"final_{tag}", seed, toy.args.final_flags
    )
    accuracy = toy.timed("evaluation", toy.score, final)
    result = {"seed": seed, "accuracy": accuracy, "boost": relevant_share(boost, toy.by_id)}
    result["final_data"] = relevant_share(final_rows, toy.by_id)
    result["seconds"] = {k: round(v - before.get(k, 0.0), 1) for k, v in toy.timings.items() if v != before.get(k)}
    write_json(result, done)
    logger.info("%s: %s", tag, result)
    return result


def arm_command(args: ToyArguments, seed: int, arm: str) -> list[str]:
    """The command line of a child process that runs one seed's arm with the same sizes."""
    common = [
        f"--{name}={value}" for name, value in asdict(args).items() if name not in ("seeds", "arms", "processes")
    ]
    return [sys.executable, __file__, *common, "--seeds", str(seed), "--arms", arm]


def run_arms_in_processes(args: ToyArguments) -> None:
    """Each (seed, arm) in a child process of this script (`processes` at once); they reuse the shared stages."""
    pending = [arm_command(args, seed, arm) for seed in args.seeds for arm in args.arms]
    threads = max(1, (os.cpu_count() or 1) // args.processes)  # the cores shared out, not each child taking them all
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    running: list[subprocess.Popen] = []
    while pending or running:
        while pending and len(running) < args.processes:
            running.append(subprocess.Popen(pending.pop(0), env=env))
        time.sleep(1.0)
        for process in [p for p in running if p.poll() is not None]:
            running.remove(process)
            if process.returncode != 0:
                raise RuntimeError(f"a seed's process failed ({process.returncode}): {shlex.join(process.args)}")


def main(args: ToyArguments) -> dict:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    for name in ("numina_kit.sctir.loop", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not args.arms or set(args.arms) - {"influence", "random"}:
        raise InputError(f"arms: one or both of influence, random (got {args.arms})")
    start = time.monotonic()
    with (
        OpenAIServer(ScriptedTeacher()) as server,
        Sandbox(ExecutorConfig(timeout=5.0, stateful=True)) as sandbox,
    ):
        teacher = HTTPTeacher(TeacherConfig(base_url=server.url, max_concurrency=16))
        toy = Toy(args, teacher, sandbox, started=start)
        rng = random.Random(args.corpus_seed)
        initial = rng.sample(toy.texts, args.initial_texts)
        initial_ids = {t.id for t in initial}
        # 0) the base model every toy model starts from (a stand-in for pre-training; no target-topic text)
        base_data = write_jsonl(
            base_rows(args.base_passages, seed=args.corpus_seed + 1, problems=args.base_problems),
            toy.work / "base_rows.jsonl",
        )
        toy.timed("base model training", toy.train, "base_tiny.yaml", base_data, "base", 0, args.base_flags)
        # 1-2) the initial distillation set and synthesis model
        distill = toy.timed("teacher calls", toy.teach, initial, "distill")
        synth0 = toy.timed(
            "synthesis model training", toy.train, "synthesis_tiny.yaml", distill, "synth0", 0, args.synthesis_flags
        )
        # 3) candidate data from the remaining texts, and LESS selection of the texts to send to the teacher
        candidates = [t for t in toy.texts if t.id not in initial_ids]
        candidate_rows = toy.timed("synthesis", toy.synthesize, synth0, candidates, "candidates", 0)
        written = len({r["text_id"] for r in read_jsonl(candidate_rows)})
        if written <= args.budget:  # a selection of B among B texts or fewer selects nothing
            raise InputError(
                f"the initial synthesis model kept rows for only {written} of {len(candidates)} candidate texts "
                f"(reasons in {candidate_rows.with_suffix('.stats.json')}), no more than the budget {args.budget}: "
                "rerun with a stronger synthesis model (synthesis_flags, or base_passages and base_flags: the stages "
                "they change are redone, the others reused) or a lower budget"
            )
        selected = toy.timed("influence selection", toy.select, synth0, candidate_rows, distill)
        pool = sorted({r["text_id"] for r in read_jsonl(candidate_rows)})
        relevant_pool = sum(is_relevant(toy.by_id[i]) for i in pool)
        relevant_selected = sum(is_relevant(toy.by_id[i]) for i in selected)
        selection = {
            "candidate_texts_with_rows": len(pool),
            "relevant_among_them": relevant_pool,
            "selected": len(selected),
            "relevant_selected": relevant_selected,
            "hypergeometric_p": hypergeometric_tail(len(pool), relevant_pool, len(selected), relevant_selected),
            "candidate_rows": relevant_share(candidate_rows, toy.by_id),
        }
        logger.info("selection: %s", selection)
        write_json(
            {"arguments": asdict(args), "selection": selection, "stage_seconds": toy.stage_seconds(),
             "total_seconds": toy.wall_seconds()},
            toy.work / "selection_summary.json",
        )  # fmt: skip
        influence_boost = toy.timed("teacher calls", toy.teach, [toy.by_id[i] for i in selected], "boost_influence")
        # 4-6) per seed: both boost arms, their synthesis models, their final data and final models
        shared = toy.stage_seconds()  # before the arms: each arm reports its own stages below
        if args.processes > 1 and len(args.seeds) * len(args.arms) > 1:
            toy.timed("arms in parallel", run_arms_in_processes, args)
        arms: dict[str, list[dict]] = {arm: [] for arm in args.arms}
        for seed in args.seeds:
            for arm in arms:
                arms[arm].append(run_arm(toy, arm, seed, distill, influence_boost, pool, len(selected)))
    stage_seconds = dict(shared)  # plus each arm's own stage times (run here or in a child process)
    for runs in arms.values():
        for run in runs:
            for name, seconds in run["seconds"].items():
                stage_seconds[name] = stage_seconds.get(name, 0.0) + seconds
    summary = {
        arm: {
            "accuracy_mean": statistics.mean(r["accuracy"] for r in runs),
            "accuracy_stdev": statistics.stdev(r["accuracy"] for r in runs) if len(runs) > 1 else 0.0,
            "final_relevant_rows_mean": statistics.mean(r["final_data"]["relevant_rows"] for r in runs),
        }
        for arm, runs in arms.items()
    }
    results = {
        "arguments": asdict(args),
        "selection": selection,
        "arms": arms,
        "summary": summary,
        "stage_seconds": {k: round(v, 1) for k, v in stage_seconds.items()},
        "total_seconds": toy.wall_seconds(),
        "processes": min(args.processes, len(args.seeds) * len(args.arms)),
    }
    if toy.is_parent:  # a child process running one arm leaves results.json alone
        write_json(results, Path(args.workdir) / "results.json")
    print(json.dumps({"summary": summary, "hypergeometric_p": selection["hypergeometric_p"]}))
    return results


if __name__ == "__main__":
    sys.argv += [] if len(sys.argv) > 1 else ["--workdir", ToyArguments.workdir]
    run_script(
        main,
        TrlParser((ToyArguments,), allow_abbrev=False),
        "usage: python training/jiuzhang_toy.py [--key value ...]",
    )
