"""Stand-in for `vllm.engine`."""
