"""What the model sees of a block: `run_block` runs it and turns what happened into the text of its output block.

This is the TIR presentation layer: stdout is captured in memory (capped, with a visible marker), the value of a final
bare expression is printed when nothing else was (decided with `ast`, so assignments and multi-line code are left
alone), and an error becomes a compact traceback: the model's failing source line and the final exception line, never
a host file path. It runs inside the sandboxed child (`numina_kit.sandbox.child`), never in the caller.
"""

import ast
import builtins
import errno
import io
import linecache
import sys
import traceback
from dataclasses import dataclass


SOURCE_NAME = "<code>"


class OutputLimitExceeded(BaseException):
    """Raised by the capture when a block prints more than the hard limit; not an `Exception`, so `except` misses it."""


def truncate(text: str, max_chars: int) -> str:
    """Keep the head and the tail of `text` within `max_chars`, with a visible marker saying how much was cut."""
    if len(text) <= max_chars:
        return text
    half = max(max_chars // 2, 1)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n... ({cut} characters of output truncated) ...\n{text[-half:]}"


class Capture(io.TextIOBase):
    """A write-only text stream that keeps only the head and tail the model can see and counts everything else."""

    def __init__(self, keep: int, limit: int) -> None:
        self.keep, self.limit = keep, limit
        self.room = keep + 64  # slack so that surrounding whitespace, stripped later, does not count
        self.head: list[str] = []
        self.head_len = 0
        self.tail = ""
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.size += len(text)
        if self.head_len < self.room:
            piece = text[: self.room - self.head_len]
            self.head.append(piece)
            self.head_len += len(piece)
        self.tail = (self.tail + text[-self.room :])[-self.room :]
        if self.size > self.limit:
            raise OutputLimitExceeded
        return len(text)

    def text(self) -> str:
        """Everything written (stripped), or its head and tail around a marker saying how much was cut."""
        head = "".join(self.head)
        if self.size <= self.room and len(head.strip()) <= self.keep:
            return head.strip()
        half = max(self.keep // 2, 1)
        start, end = head.lstrip()[:half], self.tail.rstrip()[-half:]
        cut = (len(head.strip()) if self.size <= self.room else self.size) - 2 * half
        return f"{start}\n... ({cut} characters of output truncated) ...\n{end}"


@dataclass
class BlockResult:
    """What one block produced: `status` as in `ExecResult` and the text for the output block."""

    status: str
    output: str


def _compile(code: str, auto_print: bool) -> tuple[object, object | None]:
    """Compile `code` as a module; with `auto_print`, split off a final bare expression to evaluate separately."""
    tree = ast.parse(code, SOURCE_NAME, "exec")
    last = None
    if auto_print and tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, SOURCE_NAME, "exec", dont_inherit=True)
    return body, (compile(last, SOURCE_NAME, "eval", dont_inherit=True) if last is not None else None)


def format_error(exc: BaseException, memory_mb: int = 0) -> str:
    """A compact traceback: the model's failing line (if the error passed through its code) and the exception line."""
    lines: list[str] = []
    if isinstance(exc, SyntaxError):
        lines = [line.rstrip("\n") for line in traceback.format_exception_only(type(exc), exc)]
        return "\n".join(line for line in lines if line.strip())
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename == SOURCE_NAME]
    if frames:
        frame = frames[-1]
        lines += [
            "Traceback (most recent call last):",
            f'  File "{SOURCE_NAME}", line {frame.lineno}, in {frame.name}',
        ]
        if frame.line:
            lines.append(f"    {frame.line.strip()}")
    last = traceback.format_exception_only(type(exc), exc)[-1].rstrip("\n")
    if isinstance(exc, MemoryError) and not str(exc):
        last = f"MemoryError: out of memory (the sandbox allows {memory_mb} MB)"
    lines.append(last)
    return "\n".join(lines)


def is_limit_error(exc: BaseException) -> bool:
    """Whether `exc` means a sandbox limit was hit (memory, processes, threads) rather than a bug in the code."""
    if isinstance(exc, MemoryError):
        return True
    if isinstance(exc, BlockingIOError) and exc.errno == errno.EAGAIN:  # fork() over the process cap
        return True
    return isinstance(exc, RuntimeError) and "can't start new thread" in str(exc)


def run_block(code: str, namespace: dict, *, auto_print: bool, max_output_chars: int, output_limit: int,
              memory_mb: int) -> BlockResult:  # fmt: skip
    """Run `code` in `namespace` and return what the model sees (stdout, then a compact traceback on error)."""
    capture = Capture(max_output_chars, output_limit)
    linecache.cache[SOURCE_NAME] = (len(code), None, code.splitlines(keepends=True), SOURCE_NAME)
    old_stdout = sys.stdout
    sys.stdout = capture
    status, error = "ok", ""
    try:
        body, last = _compile(code, auto_print)
        exec(body, namespace)
        if last is not None:
            value = eval(last, namespace)
            if value is not None and capture.size == 0:
                builtins.print(value, file=capture)
    except OutputLimitExceeded:
        status, error = "killed", f"Killed: the code printed more than {output_limit} characters."
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status, error = "error", f"SystemExit: {exc.code}"
    except BaseException as exc:  # noqa: BLE001 - everything the model's code raises is reported to the model
        status = "killed" if is_limit_error(exc) else "error"
        try:
            error = format_error(exc, memory_mb)
        except BaseException as inner:  # noqa: BLE001 - a hostile __str__ must not take the interpreter down
            error = f"{type(exc).__name__}: <exception could not be printed: {type(inner).__name__}>"
    finally:
        sys.stdout = old_stdout
    return BlockResult(status, join_output(capture.text(), error, max_output_chars))


def join_output(stdout: str, error: str, max_output_chars: int) -> str:
    """The output block's text: stripped stdout, then the error lines; the error's last line always survives."""
    if not error:
        return stdout.strip()
    error_lines = error.splitlines() or [error]
    room = max(max_output_chars - len(stdout), 200)
    if len(error) > room:
        error = truncate("\n".join(error_lines[:-1]), room // 2) + "\n" + truncate(error_lines[-1], room // 2)
    return (stdout.rstrip() + "\n" + error).strip("\n")
