"""The sandbox for model-written code: a pool of warm workers that fork one isolated child per block."""

from numina_kit.sandbox.pool import ExecResult, ExecutorConfig, Sandbox, run_code, run_codes


__all__ = ["ExecResult", "ExecutorConfig", "Sandbox", "run_code", "run_codes"]
