"""The life of one sandboxed child after its isolation is set up: serve block requests until the last one, then die.

`numina_kit.sandbox.worker` forks the child and isolates it (`numina_kit.sandbox.isolation`); `serve_blocks` then
reads one request per block from its pipe, runs the block (`numina_kit.sandbox.output.run_block`), answers with the
text the model sees, and after a one-off block (or when the worker closes the pipe) kills everything it started.
"""

import contextlib
import os
import resource
import signal

from numina_kit.sandbox.output import run_block
from numina_kit.sandbox.protocol import Pipe


def serve_blocks(pipe: Pipe, namespace: dict, config: dict, uid_mode: bool) -> None:
    """The child's loop: read a block request, run it, write the result; after the last, kill what it started."""
    pid = os.getpid()

    def hard_exit(code: int = 0) -> None:
        raise SystemExit(code)

    os._exit, real_exit = hard_exit, os._exit
    kill, killpg = os.kill, os.killpg  # the model's code may replace them (the pipe holds its own)
    while True:
        request = pipe.receive()
        if request is None:
            break
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        cpu = int(used + request["timeout"]) + 2
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1) if request["last"] else (cpu, -1))
        result = run_block(
            request["code"],
            namespace,
            auto_print=config["auto_print"],
            max_output_chars=config["max_output_chars"],
            output_limit=config["output_limit_chars"],
            memory_mb=config["memory_mb"],
        )
        if os.getpid() != pid:  # a fork made by the model's code finished the block: it must not answer
            real_exit(0)
        output = result.output
        if os.fstat(1).st_size:  # output written to file descriptor 1 directly (os.write, subprocesses)
            raw = os.pread(1, config["max_output_chars"], 0).decode(errors="replace")
            output = (output + "\n" + raw.strip()).strip("\n")
            os.ftruncate(1, 0)
        pipe.send({"status": result.status, "output": output})
        if request["last"]:
            break
    with contextlib.suppress(OSError):  # ESRCH: nothing left to kill
        if uid_mode:
            kill(-1, signal.SIGKILL)  # everything this run's uid still owns: children, setsid escapees
        else:
            killpg(0, signal.SIGKILL)
    real_exit(0)
