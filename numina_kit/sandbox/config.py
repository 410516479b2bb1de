"""How blocks run: `ExecutorConfig`, the one dataclass of the sandbox's limits, presentation and worker pool."""

from dataclasses import dataclass

from numina_kit.errors import InputError


DEFAULT_PREAMBLE = "import math\nimport numpy as np\nimport sympy as sp\n"
# sympy memoises its core functions in LRU caches of 1000 entries each. A model's loop over a thousand values
# (`floor(log(N, 2))` for N up to 1024) evicts what it will need again and runs about a fifth slower than with room
# to keep it; a 60,000-step loop of distinct expansions then holds about 460 MB instead of 60 MB, within `memory_mb`.
SYMPY_DEFAULT_CACHE, ONE_OFF_SYMPY_CACHE = 1000, 100_000


@dataclass
class ExecutorConfig:
    """How blocks run: limits, presentation and the worker pool (one dataclass; the defaults follow Numina)."""

    timeout: float = 5.0  # wall-clock seconds per block
    max_output_chars: int = 1000  # what the model sees; longer output keeps its head and tail around a marker
    memory_mb: int = 2048  # address-space cap per process (RLIMIT_AS)
    preamble: str = DEFAULT_PREAMBLE  # run once per worker; its globals seed every block
    auto_print: bool = True  # print the value of a final bare expression when the block printed nothing
    stateful: bool = False  # keep one interpreter per key across calls (for models trained with a persistent REPL)
    num_workers: int | None = None  # worker processes (blocks run in parallel); None = one per CPU core
    max_processes: int = 32  # processes and threads per block (RLIMIT_NPROC; needs root, see docs/executor.md)
    max_file_mb: int = 64  # largest file a block may write (RLIMIT_FSIZE)
    output_limit_chars: int = 1_000_000  # printing more than this kills the block
    warmup: bool = True  # exercise sympy once in each worker so lazy imports and caches are loaded
    privileged: bool = True  # isolate as strongly as the machine allows (False: rlimits and a private directory only)
    spare_children: int = 24  # children each worker forks ahead while idle (a round's share of 48 blocks on 2 cores)
    sympy_cache_size: int | None = None  # entries per sympy cache in a block (None: see `sympy_cache_entries`)

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise InputError(f"executor timeout must be positive, got {self.timeout!r}")
        for name in ("max_output_chars", "memory_mb", "max_processes", "max_file_mb", "output_limit_chars",
                     "spare_children"):  # fmt: skip
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise InputError(f"executor {name} must be a positive integer, got {getattr(self, name)!r}")
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 1):
            raise InputError(f"executor num_workers must be a positive integer or None, got {self.num_workers!r}")
        if not isinstance(self.preamble, str):
            raise InputError("executor preamble must be a string of Python code")
        if self.sympy_cache_size is not None and (
            not isinstance(self.sympy_cache_size, int) or self.sympy_cache_size < 0
        ):
            raise InputError(
                f"executor sympy_cache_size must be a non-negative integer or None, got {self.sympy_cache_size!r}"
            )

    def sympy_cache_entries(self) -> int:
        """The size of each sympy cache in the blocks: a one-off child's cache dies with it, so it can be large; 48
        stateful interpreters would each keep theirs for a whole problem, so they get sympy's default."""
        if self.sympy_cache_size is not None:
            return self.sympy_cache_size
        return SYMPY_DEFAULT_CACHE if self.stateful else ONE_OFF_SYMPY_CACHE
