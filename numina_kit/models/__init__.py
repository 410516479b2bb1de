"""Models: the `Generator` interface, its vLLM and transformers backends, and loading a checkpoint into one."""

from numina_kit.models.base import Completion, Generator, SamplingParams
from numina_kit.models.load import load_generator


__all__ = ["Completion", "Generator", "SamplingParams", "load_generator"]
