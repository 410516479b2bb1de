"""`SCTIRConfig`: every setting of one SC-TIR run, read from code or YAML, checked with one-line errors."""

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from numina_kit.answers import competition_rule
from numina_kit.configs import read_mapping, reject_unknown_keys
from numina_kit.errors import InputError
from numina_kit.protocols import ProtocolConfig
from numina_kit.sandbox.pool import ExecutorConfig
from numina_kit.sctir.selection import make_selector
from numina_kit.sctir.voting import ConsistencyRule


# "auto": the async engine when the generator streams (`numina_kit.models.streaming.is_streaming`), else sync
ENGINES = ("auto", "sync", "async")


@dataclass
class SCTIRConfig:
    """Every setting of one SC-TIR run; the defaults are Numina's AIMO-1 submission (48 candidates x 4 rounds)."""

    num_candidates: int = 48
    max_rounds: int = 4
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 2048  # per round
    max_context_tokens: int = 4096  # prompt + solution; longer candidates are pruned
    restart_on_fail: bool = True  # restart a candidate that wrote no code (or no answer) instead of pruning it
    competition: str = "aimo1"  # a rule in answers.COMPETITIONS; "general": strings voted on by equivalence
    early_stop: ConsistencyRule | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    execute_code: bool = True  # False: append an empty output block instead of running code (ablation)
    seed: int | None = None
    engine: str = "auto"  # "sync": Numina's rounds (loop.py); "async": one pipeline per candidate (engine.py)
    stop_when_decided: bool = False  # stop once no remaining candidate could change the vote's winner
    stream_answers: bool = False  # async engine: end a request at the first complete \boxed{} it streams
    # The model's tool-call format (numina_kit.protocols): a name or {name: ..., options}; it decides whether the
    # sandbox keeps one interpreter per candidate (`executor.stateful` is set from it).
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    min_p: float = 0.0
    logprobs: int | None = None  # keep each token's top-k logprobs as entropies: confidence evidence for the vote
    # how the answer is chosen among the candidates' (numina_kit.sctir.selection): "majority", "code", "confidence",
    # "prior", ... or a product such as "confidence+code"; confidence and logprob need `logprobs`
    selector: str = "majority"
    vllm_args: dict[str, Any] = field(default_factory=dict)  # vLLM engine arguments the notebook loads the model with

    def __post_init__(self) -> None:
        competition_rule(self.competition)  # InputError for an unknown name
        self.protocol = ProtocolConfig.from_value(self.protocol, source="SCTIRConfig.protocol")
        stateful = self.protocol.stateful_default
        if stateful is not None and stateful != self.executor.stateful:
            self.executor = replace(self.executor, stateful=stateful)
        if self.stream_answers and self.protocol.name != "tora":
            raise InputError("SCTIRConfig.stream_answers reads ToRA's fences: it needs protocol 'tora'")
        if not isinstance(self.vllm_args, dict):
            raise InputError(
                f"SCTIRConfig.vllm_args must be a mapping of vLLM engine arguments, got {self.vllm_args!r}"
            )
        for name in ("num_candidates", "max_rounds", "max_new_tokens", "max_context_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"SCTIRConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        make_selector(self.selector)  # InputError for an unknown name
        if self.engine not in ENGINES:
            raise InputError(f"SCTIRConfig.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SCTIRConfig":
        """Read a config from YAML: top-level keys are the fields; `early_stop` and `executor` are mappings."""
        return cls.from_dict(read_mapping(path, what="SCTIRConfig fields"), source=str(path))

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> "SCTIRConfig":
        """Build a config from plain values (as YAML gives them), naming any unknown key."""
        reject_unknown_keys(data, cls, source=source, name="SCTIRConfig ")
        data = dict(data)
        try:
            if isinstance(data.get("early_stop"), dict):
                data["early_stop"] = ConsistencyRule(**data["early_stop"])
            if isinstance(data.get("executor"), dict):
                data["executor"] = ExecutorConfig(**data["executor"])
            return cls(**data)
        except TypeError as error:
            raise InputError(f"{source}: {error}") from None
