"""Shared by every benchmark: describe the machine and rewrite one section of docs/benchmarks.md.

Each benchmark owns the section between `<!-- begin:NAME -->` and `<!-- end:NAME -->`, so benchmarks can run in any
order and rerunning one replaces only its own figures.
"""

import fcntl
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path


REPORT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
HEADER = "# Benchmarks\n\nEach section is written by the script named in it (`make bench` reruns them all).\n"


def describe_machine() -> str:
    """One line naming the CPU, core count, memory, OS and Python, for the record beside each table."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem_gb = float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def git_revision() -> str:
    """The commit the figures were measured at (with `+dirty` when the tree had changes)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
        return rev.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(name: str, title: str, body: str, path: Path = REPORT) -> None:
    """Replace (or append) section `name` of the report with `title`, the machine line and `body` (Markdown)."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "?"
    block = (
        f"<!-- begin:{name} -->\n## {title}\n\n"
        f"Written by `benchmarks/{script}` on {stamp} at `{git_revision()}`.\n"
        f"Machine: {describe_machine()}.\n\n{body.strip()}\n<!-- end:{name} -->\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text() if path.exists() else HEADER
        pattern = re.compile(rf"<!-- begin:{re.escape(name)} -->.*?<!-- end:{re.escape(name)} -->\n?", re.DOTALL)
        text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block
        path.write_text(text)


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
