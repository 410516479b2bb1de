"""GenSelect: a model reads the candidates, grouped by answer, and says which answer is right (NeMo-Skills' AIMO-2
selector, "GenSelect", arXiv:2507.17797); several judgements are voted.

The mechanism is here and tested with a scripted judge: the prompt lists the leading answers, each with one of its
candidates' solutions (shortened); the judge replies with the number of the answer it picks as `\\boxed{N}`; the
judgements vote, and when none can be read the plain majority stands. Whether it beats a majority depends entirely
on the judge: that can only be measured with a real model (the demo model here was never trained to judge).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from numina_kit.answers import extract_boxed
from numina_kit.models.base import Generator, SamplingParams
from numina_kit.protocols import tokenizer_of
from numina_kit.sctir.candidates import Candidate
from numina_kit.sctir.selection import Equivalent
from numina_kit.sctir.voting import VoteResult, majority_vote


INSTRUCTION = (
    "Below is a math problem and {count} candidate solutions, each reaching a different final answer. "
    "Check their reasoning and code, decide which final answer is correct, and reply with its number as "
    "\\boxed{{N}} (1 to {count})."
)


@dataclass(frozen=True)
class GenSelect:
    """Pick among the `leaders` most voted answers by asking `generator` `judgements` times."""

    generator: Generator
    judgements: int = 4
    leaders: int = 4
    max_chars: int = 1500  # of each solution shown (its end, where the answer is)
    temperature: float = 0.6
    max_new_tokens: int = 1024
    seed: int | None = 0
    name: str = "genselect"

    def prompt(self, problem: str, shown: Sequence[Candidate]) -> str:
        """The judge's prompt: the instruction, the problem, and one solution per answer, numbered from 1."""
        parts = [INSTRUCTION.format(count=len(shown)), f"Problem:\n{problem}"]
        for number, candidate in enumerate(shown, start=1):
            text = (
                candidate.text if len(candidate.text) <= self.max_chars else "..." + candidate.text[-self.max_chars :]
            )
            parts.append(f"Solution {number} (final answer {candidate.raw_answer or candidate.answer}):\n{text}")
        content = "\n\n".join(parts)
        tokenizer = tokenizer_of(self.generator)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": content}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return content + "\n\nAnswer: "

    def select(
        self, candidates: Sequence[Candidate], *, problem: str, equivalent: Equivalent | None = None
    ) -> VoteResult:
        """The answer the judgements pick; the plain majority when fewer than two answers compete or no judgement
        names one of the answers shown. `table` then counts judgements, not candidates."""
        majority = majority_vote([c.answer for c in candidates], equivalent=equivalent)
        answers = list(majority.table)[: self.leaders]
        if len(answers) < 2:
            return majority
        # the representative of an answer: its first candidate to finish (the one the vote's tie-break trusts)
        shown = [next(c for c in candidates if _same(c.answer, answer, equivalent)) for answer in answers]
        params = SamplingParams(temperature=self.temperature, max_new_tokens=self.max_new_tokens, seed=self.seed)
        completions = self.generator.generate([self.prompt(problem, shown)] * self.judgements, params)
        picks = [parse_choice(c.text, len(shown)) for c in completions]
        chosen = [answers[pick - 1] for pick in picks if pick is not None]
        return majority_vote(chosen) if chosen else majority


def parse_choice(text: str, count: int) -> int | None:
    """The solution number (1..count) in the judge's last `\\boxed{}`, or None when there is none or it is not one."""
    boxed = extract_boxed(text)
    if boxed is None:
        return None
    value = boxed.strip().removeprefix("Solution").strip()
    return int(value) if value.isdigit() and 1 <= int(value) <= count else None


def _same(a: object, b: object, equivalent: Equivalent | None) -> bool:
    return a == b or (equivalent is not None and equivalent(a, b))
