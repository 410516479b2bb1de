"""The tool-call protocol: how a model that calls Python as a tool is prompted, stopped, read and answered.

A protocol is one model family's text format. The SC-TIR engines (`numina_kit.sctir.candidates.advance`), training's
data rendering and the tests all go through one, so what a model is trained on and what it is served cannot drift.
One attempt at a problem, as the engines run it:

    prompt = protocol.render_prompt(problem)           # system/developer/user messages + the generation prompt
    completion = generate(prompt + text, stop=protocol.stop, skip_special_tokens=protocol.skip_special_tokens)
    turn = protocol.parse(text, completion.text, completion.finish_reason)
    if turn.calls:   text += completion.text + protocol.render_results(turn, outputs)   # and generate again
    elif turn.final: answer = protocol.extract_answer(turn.final)

`text` (the attempt so far, without the prompt) is always the model's own text plus what the protocol appended, so
each request extends the previous one and a prefix-caching server reuses its KV cache. Adding a model family is one
subclass of `ToolProtocol` registered in `numina_kit.protocols.PROTOCOLS`.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from numina_kit.answers.extract import extract_answer, extract_boxed


@dataclass(frozen=True)
class ToolCall:
    """One call of the python tool: the code to run, or why the call could not be read (`error`, shown to the model
    as the tool's result instead of running anything). `tool` and `channel` say where the result goes back."""

    code: str
    error: str | None = None
    tool: str = "python"
    channel: str | None = None


@dataclass(frozen=True)
class Turn:
    """What one completion ended with: tool calls to run before the model goes on, a final message (`final`, the text
    the answer is read from), or neither. `cut_off`: the token limit ended it inside a message."""

    calls: tuple[ToolCall, ...] = ()
    final: str | None = None
    cut_off: bool = False


class ToolProtocol(ABC):
    """One model family's format. Subclasses set the class attributes and implement the four abstract methods.

    - `stateful`: the python tool keeps variables across the calls of one attempt (Harmony's Jupyter tool); the
      sandbox then keeps one interpreter per attempt (`ExecutorConfig.stateful`), reset between problems.
    - `requires_code`: an answer counts only once the model has run code (Numina's rule: a trained TIR model that
      answers without code made its result up); `wrote_code`/`ran_code` say whether it has.
    - `resume_cut_off`: a turn cut off by the token limit is continued in the next round (else it has failed).
    - `skip_special_tokens`: False when the format itself is made of special tokens (Harmony), which generation
      must then keep in the text.
    - `boxed_only`: answers only from `\\boxed{}` (no "the answer is" fallback, which fires on intermediate steps).
    """

    name: ClassVar[str]
    stateful: bool = False
    requires_code: bool = False
    resume_cut_off: bool = True
    skip_special_tokens: bool = True
    boxed_only: bool = True

    @abstractmethod
    def render_prompt(self, problem: str) -> str:
        """The text sent before the model's first token: the messages the model expects and the generation prompt."""

    @property
    @abstractmethod
    def stop(self) -> tuple[str, ...]:
        """Stop strings that end a turn at a tool call (kept at the end of the completion)."""

    @abstractmethod
    def parse(self, history: str, text: str, finish_reason: str) -> Turn:
        """Read one completion `text`, generated after `history` (the attempt so far); never raises."""

    @abstractmethod
    def render_results(self, turn: Turn, outputs: list[str]) -> str:
        """What to append after a completion that made `turn.calls`: each call's output in order, then the prompt
        for the model's next turn."""

    @property
    @abstractmethod
    def end_of_turn(self) -> str:
        """The text that closes the model's final message in a training example (the token it learns to stop on)."""

    def extract_answer(self, final: str) -> str | None:
        """The answer stated in a final message: the last `\\boxed{}`, or with `boxed_only` False also an "answer
        is" phrase (`numina_kit.answers.extract_answer`)."""
        if self.boxed_only:
            return extract_boxed(final) or None
        return extract_answer(final)

    def wrote_code(self, text: str) -> bool:
        """Whether the attempt `text` holds a complete tool call (consulted only when `requires_code`)."""
        return True

    def ran_code(self, text: str) -> bool:
        """Whether the attempt `text` holds a tool result (consulted only when `requires_code`)."""
        return True

    def render_example(self, problem: str, solution: str) -> str:
        """A whole training example: the prompt, the attempt (model text and tool results), the end of the turn."""
        return self.render_prompt(problem) + solution + self.end_of_turn

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stateful={self.stateful}, boxed_only={self.boxed_only})"


def current_turn(history: str, call_end: str, turn_start: str) -> str:
    """The part of the model's current turn already in `history`: "" right after tool results (which end with
    `turn_start`, the next turn's opening), else the text of a turn the token limit cut off (resumed by this
    completion), from the first `turn_start` after the last `call_end`, or from the start of the attempt."""
    last_call = history.rfind(call_end)
    if last_call == -1:
        return history
    opening = history.find(turn_start, last_call)
    return "" if opening == -1 else history[opening + len(turn_start) :]
