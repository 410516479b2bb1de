"""A CPU stand-in for the parts of vLLM that numina_kit calls, for tests only (vLLM cannot be installed in CI).

It mirrors vLLM 0.19-0.33's public names and signatures so that a renamed or misspelt argument fails a test the way
it would fail against the real package: `LLM(model, *, ...explicit args..., **kwargs)` with `kwargs` checked against
`EngineArgs`'s fields, `SamplingParams` rejecting unknown fields and validating like vLLM, `LLM.generate(prompts,
sampling_params, *, use_tqdm, ...)` returning `RequestOutput`s whose `outputs[i]` carry `text`, `token_ids`,
`finish_reason` and `stop_reason`, and `LLM.get_tokenizer()`.

It runs the checkpoint with transformers in float32 on CPU, one request at a time, applying vLLM's rules for EOS,
stop strings (`check_stop_strings`), `include_stop_str_in_output`, `max_tokens`, `max_model_len` and per-request
seeds. It has no GPU, no quantized kernels (a checkpoint's `quantization_config` is validated against the
`quantization` argument as vLLM does, then its float weights are run), no batching and no KV-cache sharing.
"""

from vllm.engine.arg_utils import EngineArgs
from vllm.entrypoints.llm import LLM
from vllm.outputs import CompletionOutput, RequestOutput
from vllm.sampling_params import SamplingParams


__version__ = "0.19.1+standin"
__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "EngineArgs"]
