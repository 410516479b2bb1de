"""Gradient-based text selection (LESS), to spend teacher calls on the texts that matter most for a target task.

JiuZhang3.0 (Zhou et al. 2024) ranks candidate texts by the value of the data the initial synthesis model writes
from them, estimated with gradients, and sends the top texts to the teacher; the formula is LESS's (Xia et al. 2024,
arXiv 2402.04333, princeton-nlp/LESS):

    Inf(z) = sum_i lr_i * mean_z' cos(P Gamma(z; theta_i), P grad l(z'; theta_i))

- theta_i are checkpoints of a LoRA reference model warmed up on a small share of the candidate data (peft, TRL's
  trainer; each checkpoint keeps its Adam state), lr_i the learning rate at checkpoint i;
- grad l(z; theta) is the gradient of one sample's loss (completion tokens only) on the LoRA parameters only,
  computed for many samples at once with `torch.func` (`vmap` of `grad` over `functional_call`);
- Gamma(z) = m' / (sqrt(v') + eps) is the update Adam would take for a candidate sample, with
  m' = b1 m + (1 - b1) g and v' = b2 v + (1 - b2) g^2 from the checkpoint's Adam moments m, v; a target sample
  z' (the training split of the target task, never its test split) uses its plain gradient;
- P is a seeded random projection with +-1/sqrt(k) (Rademacher) entries to k dimensions (8192 by default);
  projected features are normalised, so their dot products are cosines.

A text's value is the mean influence of the samples written from it; the top B texts go to the teacher.

Written by hand, and why: the Adam preconditioning and the aggregation are a few lines of the formula. The
projector is ours because the library LESS uses (traker's `CudaProjector`) needs CUDA kernels; ours regenerates
the matrix block by block from its seed (never storing it), on whatever device the gradients are on, at a cost of
D x k random signs per call, so project candidates in large chunks on a GPU.
"""

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from numina_kit.data.jsonl import write_json
from numina_kit.errors import InputError


ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass
class Example:
    """One tokenized sample: `labels` is -100 on the prompt (no loss there) and the token ids on the completion."""

    input_ids: list[int]
    labels: list[int]


def tokenize_examples(rows: Sequence[dict], tokenizer, *, max_length: int = 1024) -> list[Example]:
    """`input`/`output` rows as examples: loss on the output and EOS only, cut to `max_length` tokens."""
    examples = []
    for row in rows:
        prompt = tokenizer(row["input"])["input_ids"]
        full = tokenizer(row["input"] + row["output"])["input_ids"] + [tokenizer.eos_token_id]
        if full[: len(prompt)] != prompt:  # the prompt's last token merged with the output's first: start there
            prompt = prompt[:-1]
        full = full[:max_length]
        labels = [-100] * len(prompt) + full[len(prompt) :]
        if all(label == -100 for label in labels[1:]):
            raise InputError(f"a sample has no output tokens within max_length={max_length}")
        examples.append(Example(full, labels[: len(full)]))
    return examples


def lora_parameters(model) -> dict:
    """The trainable (LoRA) parameters of a peft model, by name, in a fixed order."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def per_sample_gradients(model, examples: Sequence[Example], *, chunk: int = 16):
    """The gradient of each example's loss on the LoRA parameters, flattened: a [len(examples), D] tensor.

    Samples are right-padded and run without an attention mask: under a causal mask the real tokens never see the
    padding to their right, and padded labels are -100, so each loss is exactly the unpadded one. The model must not
    have been trained with gradient checkpointing: its input hooks cannot run under `torch.func`.
    """
    import torch
    from torch.func import functional_call, grad, vmap

    params = {name: p.detach() for name, p in lora_parameters(model).items()}
    if not params:
        raise InputError("the model has no trainable parameters (expected a peft LoRA model)")
    device = next(iter(params.values())).device

    def loss(p: dict, input_ids, labels):
        return functional_call(model, p, args=(), kwargs={"input_ids": input_ids[None], "labels": labels[None]}).loss

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0))
    flat = []
    model.eval()
    for begin in range(0, len(examples), chunk):
        part = examples[begin : begin + chunk]
        width = max(len(e.input_ids) for e in part)
        ids = torch.tensor([e.input_ids + [0] * (width - len(e.input_ids)) for e in part], device=device)
        labels = torch.tensor([e.labels + [-100] * (width - len(e.labels)) for e in part], device=device)
        grads = per_sample(params, ids, labels)
        flat.append(torch.cat([grads[name].reshape(len(part), -1) for name in params], dim=1).float())
    return torch.cat(flat)


def adam_precondition(grads, exp_avg, exp_avg_sq, *, betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS):
    """Gamma(z): the step Adam would take for each row of `grads`, from a checkpoint's first and second moments."""
    b1, b2 = betas
    m = b1 * exp_avg + (1 - b1) * grads
    v = b2 * exp_avg_sq + (1 - b2) * grads**2
    return m / (v.sqrt() + eps)


class RademacherProjector:
    """x -> x R with R a seeded D x k matrix of +-1/sqrt(k), generated block by block and never stored."""

    def __init__(self, in_dim: int, out_dim: int = 8192, *, seed: int = 0, block_rows: int = 4096) -> None:
        if in_dim < 1 or out_dim < 1:
            raise InputError(f"projection dimensions must be positive, got {in_dim} -> {out_dim}")
        self.in_dim, self.out_dim, self.seed, self.block_rows = in_dim, out_dim, seed, block_rows

    def __call__(self, x):
        import torch

        if x.shape[-1] != self.in_dim:
            raise InputError(f"projector expects {self.in_dim} features, got {x.shape[-1]}")
        out = torch.zeros(*x.shape[:-1], self.out_dim, device=x.device, dtype=torch.float32)
        scale = 1.0 / math.sqrt(self.out_dim)
        for block, begin in enumerate(range(0, self.in_dim, self.block_rows)):
            end = min(begin + self.block_rows, self.in_dim)
            generator = torch.Generator(device=x.device).manual_seed(self.seed * 1_000_003 + block)
            signs = torch.randint(0, 2, (end - begin, self.out_dim), generator=generator, device=x.device)
            out += x[..., begin:end].float() @ ((signs * 2 - 1).float() * scale)
        return out


@dataclass
class Checkpoint:
    """A saved state of the reference model: its folder (adapter and optimizer state) and its learning rate."""

    path: Path
    learning_rate: float


def find_checkpoints(output_dir: str | Path) -> list[Checkpoint]:
    """The `checkpoint-<step>` folders a trainer saved, in step order, each with its learning rate: the mean rate
    of the steps since the previous checkpoint (LESS's per-epoch rate), from the logged history."""
    folders = sorted(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    checkpoints, previous = [], 0
    for folder in folders:
        for name in ("optimizer.pt", "trainer_state.json", "adapter_model.safetensors"):
            if not (folder / name).is_file():
                raise InputError(f"{folder} has no {name}: save LoRA checkpoints with their optimizer state")
        step = int(folder.name.rsplit("-", 1)[1])
        history = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))["log_history"]
        rates = [h["learning_rate"] for h in history if "learning_rate" in h and previous < h["step"] <= step]
        if not rates:
            raise InputError(f"{folder}: no learning rate logged since step {previous} (set logging_steps: 1)")
        checkpoints.append(Checkpoint(folder, sum(rates) / len(rates)))
        previous = step
    if not checkpoints:
        raise InputError(f"no checkpoint-* folders in {output_dir}")
    return checkpoints


def load_checkpoint(model, optimizer, checkpoint: Checkpoint):
    """Load a checkpoint's adapter weights into `model` and its Adam moments, flattened in parameter order.

    `optimizer` is the one the trainer built over `model` (so its parameter order matches the saved state).
    """
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(checkpoint.path / "adapter_model.safetensors"))
    optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps the torch optimizer
    optimizer.load_state_dict(torch.load(checkpoint.path / "optimizer.pt", weights_only=True))
    moments = []
    for name, p in lora_parameters(model).items():
        state = optimizer.state.get(p)
        if not state or "exp_avg" not in state:
            raise InputError(f"{checkpoint.path}: no Adam state for {name} (was the optimizer Adam or AdamW?)")
        moments.append((state["exp_avg"].reshape(-1), state["exp_avg_sq"].reshape(-1)))
    return torch.cat([m for m, _ in moments]).float(), torch.cat([v for _, v in moments]).float()


def influence_scores(
    model,
    optimizer,
    checkpoints: Sequence[Checkpoint],
    candidates: Sequence[Example],
    targets: Sequence[Example],
    *,
    projection_dim: int = 8192,
    seed: int = 0,
    chunk: int = 16,
):
    """Inf(z) for every candidate (a numpy array), summed over checkpoints weighted by their learning rates."""
    import torch

    def unit(x):
        return torch.nn.functional.normalize(x, dim=-1)

    total = torch.zeros(len(candidates))
    projector = None
    for checkpoint in checkpoints:
        exp_avg, exp_avg_sq = load_checkpoint(model, optimizer, checkpoint)
        projector = projector or RademacherProjector(exp_avg.numel(), projection_dim, seed=seed)
        target = unit(projector(per_sample_gradients(model, targets, chunk=chunk)))
        scores = []
        for begin in range(0, len(candidates), 256):
            grads = per_sample_gradients(model, candidates[begin : begin + 256], chunk=chunk)
            features = unit(projector(adam_precondition(grads, exp_avg.to(grads.device), exp_avg_sq.to(grads.device))))
            scores.append((features @ target.T).mean(dim=1).cpu())
        total += checkpoint.learning_rate * torch.cat(scores)
    return total.numpy()


def text_values(scores: Sequence[float], text_ids: Sequence[str]) -> dict[str, float]:
    """A text's value: the mean score of the samples written from it."""
    by_text: dict[str, list[float]] = defaultdict(list)
    for score, text_id in zip(scores, text_ids, strict=True):
        by_text[text_id].append(float(score))
    return {text_id: sum(values) / len(values) for text_id, values in by_text.items()}


def select_top(values: dict[str, float], budget: int) -> list[str]:
    """The `budget` most valuable text ids, best first (ties broken by id, so the choice is reproducible)."""
    return [text_id for text_id, _ in sorted(values.items(), key=lambda item: (-item[1], item[0]))[:budget]]


def hypergeometric_tail(population: int, successes: int, draws: int, observed: int) -> float:
    """P(X >= observed) for X ~ Hypergeometric(population, successes, draws): how surprising it is that `observed`
    of `draws` chosen items are relevant when `successes` of `population` are, were the choice random."""
    total = math.comb(population, draws)
    upper = min(successes, draws)
    return (
        sum(math.comb(successes, k) * math.comb(population - successes, draws - k) for k in range(observed, upper + 1))
        / total
    )


def write_selection(path: str | Path, values: dict[str, float], selected: list[str]) -> None:
    """The selection as JSON: the chosen text ids in order, and every text's value."""
    write_json({"selected": selected, "values": dict(sorted(values.items(), key=lambda item: -item[1]))}, path)
