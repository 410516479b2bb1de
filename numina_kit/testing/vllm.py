"""The real vLLM engine on CPU (vLLM's CPU build, `make vllm-env`): in process, or as `vllm serve`."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from numina_kit.testing.server import free_port


# --- the real vLLM engine on CPU (vLLM's CPU build, `make vllm-env`) -------------------------------------------------

# vLLM's engine core and its worker run inside the calling process: a start then takes seconds instead of the minute
# two spawned processes need to import torch and vLLM again. `nobind` leaves the caller's CPU affinity alone.
IN_PROCESS_VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
# No torch.compile warm-up, one process, and a small KV cache (in host memory).
IN_PROCESS_VLLM_ARGS = {"enforce_eager": True, "distributed_executor_backend": "uni", "kv_cache_memory_bytes": 2**28}
VLLM_MISSING = "vLLM is not installed in this environment: `make test-vllm` runs this in .venv-vllm (vLLM's CPU build)"


def open_vllm_in_process(model_path: str | Path, **overrides: object):
    """A `VLLMGenerator` whose engine runs in this process on vLLM's CPU build, for tests and benchmarks.

    It goes through `load_generator(backend="vllm")` like any caller; only the start-up settings above differ from
    the defaults (they set environment variables of this process, which vLLM reads when an engine starts).
    """
    from numina_kit.models.load import load_generator

    os.environ.update(IN_PROCESS_VLLM_ENV)
    return load_generator(model_path, backend="vllm", **{**IN_PROCESS_VLLM_ARGS, **overrides})


class VLLMServer:
    """vLLM's OpenAI-compatible server (`vllm serve MODEL`) on 127.0.0.1 in a child process of the current interpreter's
    vLLM, stopped on exit.

    `url` is the OpenAI base URL (`http://127.0.0.1:PORT/v1`); `kill()` ends it at once, as a crash would, and
    `start()` can start it again on the same port; the log is kept in `log_path`. Start-up waits for `/v1/models` to
    answer, at most `start_timeout_s`.
    """

    def __init__(
        self,
        model: str | Path,
        log_path: str | Path,
        *,
        args: tuple[str, ...] = (),
        port: int | None = None,
        start_timeout_s: float = 600,
    ) -> None:
        self.model, self.log_path, self.args, self.start_timeout_s = str(model), Path(log_path), args, start_timeout_s
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self) -> "VLLMServer":
        # What `vllm serve` starts. That command itself fails in vllm-cpu 0.32.0: it asks for the version of the
        # distribution "vllm", and the CPU build's distribution is "vllm-cpu".
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", "teacher", *self.args]
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}: see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        self.kill()
        raise RuntimeError(f"vllm serve did not answer within {self.start_timeout_s:.0f} s: see {self.log_path}")

    def kill(self) -> None:
        """End the server and every process it started (its engine core), at once."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Ask the server to shut down (SIGTERM), then kill what is left after 30 s."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
