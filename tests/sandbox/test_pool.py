"""Tests for numina_kit.sandbox.pool: TIR semantics (fresh globals, auto-print, compact tracebacks, output cap, timeouts),
stateful interpreters, the default sandbox, and a table of hostile programs that must each be contained within their
time bound, leaving no process and no file behind."""

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from numina_kit.errors import InputError
from numina_kit.sandbox.pool import ExecResult, ExecutorConfig, Sandbox, run_code, run_codes
from numina_kit.sandbox.protocol import STATE_LOST


TIMEOUT = 1.0
GRACE = 3.0  # kill, clean up and answer: the bound on top of the timeout
SECRET = "numina-kit-test-secret-8d1f"
REPO = Path(__file__).resolve().parents[2]
ESCAPE_TMP = Path("/tmp/numina_kit_escape_marker")
ESCAPE_REPO = REPO / "numina_kit_escape_marker"


@pytest.fixture(scope="module")
def sandbox():
    os.environ["NUMINA_KIT_TEST_SECRET"] = SECRET
    try:
        with Sandbox(ExecutorConfig(timeout=TIMEOUT, num_workers=2, memory_mb=384, max_processes=16)) as box:
            assert box.isolation  # start the workers now, not inside the first timed test
            yield box
    finally:
        os.environ.pop("NUMINA_KIT_TEST_SECRET", None)


@pytest.fixture(scope="module")
def stateful():
    with Sandbox(ExecutorConfig(timeout=TIMEOUT, num_workers=2, stateful=True)) as box:
        yield box


def stray_processes(box: Sandbox) -> list[psutil.Process]:
    """Processes the blocks of `box` left behind: descendants of its workers (subreapers, so orphans stay below them)
    that are not a live (spare or stateful) child."""
    strays = []
    for worker in box._workers:
        if worker.proc is not None and worker.proc.poll() is None:
            descendants = psutil.Process(worker.proc.pid).children(recursive=True)
            strays += [proc for proc in descendants if proc.pid not in worker.live]
    return strays


def leftover_files(box: Sandbox) -> list[str]:
    """Files in each worker's runs directory (seen through its mount namespace) that belong to no live child."""
    found = []
    for worker in box._workers:
        if worker.proc is None or worker.proc.poll() is not None:
            continue
        runs = Path(f"/proc/{worker.proc.pid}/root{worker.runs_root}")
        allowed = {str(pid) for pid in worker.live} | {f"{pid}.out" for pid in worker.live}
        if runs.is_dir():
            found += [entry.name for entry in runs.iterdir() if entry.name not in allowed]
    return found


def settle(check, seconds: float = 3.0):
    """`check()` once it returns something falsy, or its last value after `seconds` (exits are asynchronous)."""
    deadline = time.monotonic() + seconds
    while (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def assert_clean(box: Sandbox) -> None:
    assert settle(lambda: stray_processes(box)) == []
    assert settle(lambda: leftover_files(box)) == []


# ---- TIR semantics --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,output",
    [
        ("1 + 1", "2"),
        ("x = 3\nx * 2", "6"),
        ("x = 1 / 0" + "\n" * 0, None),  # an assignment is never wrapped in print (Numina's bug)
        ("print('a')\n'b'", "a"),  # something was printed: the final value is not
        ("def f(x):\n    return x + 1\nf(\n    41\n)", "42"),  # multi-line final expression
        ("for i in range(3):\n    i", ""),  # indented last line is not a bare top-level expression
        ("x = 5", ""),
        ("None", ""),
        ("sp.Rational(1, 3) + sp.Rational(1, 6)", "1/2"),
        ("np.array([1, 2, 3]).sum()", "6"),
        ("math.factorial(5)", "120"),
    ],
)
def test_auto_print_uses_the_ast(sandbox, code, output):
    result = sandbox.run(code)
    if output is None:
        assert result.status == "error" and result.output.endswith("ZeroDivisionError: division by zero")
    else:
        assert (result.status, result.output) == ("ok", output)


def test_auto_print_can_be_turned_off():
    with Sandbox(ExecutorConfig(auto_print=False, num_workers=1, warmup=False)) as box:
        assert box.run("1 + 1").output == ""
        assert box.run("print(3)").output == "3"


@pytest.mark.parametrize("module", ["statistics", "colorsys", "fractions"])
def test_blocks_import_modules_the_worker_never_loaded(sandbox, module):
    """Python may live under a root-only directory (pyenv in /root): the block's own uid must still import from it."""
    result = sandbox.run(f"import {module}\nprint({module}.__name__)")
    assert (result.status, result.output) == ("ok", module), result.output
    assert sandbox.isolation["python_visible"]


def test_scipy_is_importable_but_not_preloaded(sandbox):
    """Kaggle's image has scipy and models use it; the worker does not import it, so it costs only the blocks that do."""
    assert sandbox.run("import sys\n'scipy' in sys.modules").output == "False"
    result = sandbox.run("from scipy import optimize\nround(optimize.brentq(lambda x: x**2 - 2, 0, 2), 6)", timeout=30)
    assert (result.status, result.output) == ("ok", "1.414214")


def test_each_block_runs_in_fresh_globals(sandbox):
    assert sandbox.run("leak = 1\nimport fractions").status == "ok"
    result = sandbox.run("print(leak)")
    assert result.status == "error" and result.output.endswith("NameError: name 'leak' is not defined")
    assert sandbox.run("sp.x = 1\nnp.pi = 3").status == "ok"
    assert sandbox.run("print(hasattr(sp, 'x'), np.pi > 3.1)").output == "False True"


def test_error_shows_the_failing_model_line_and_no_host_path(sandbox):
    code = "import sympy\nx = sp.symbols('x')\ny = 2\nsp.solve(x**2 - 1, x, bogus_flag_value=object())[5]"
    result = sandbox.run(code)
    assert result.status == "error"
    lines = result.output.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1] == '  File "<code>", line 4, in <module>'
    assert lines[2].strip().startswith("sp.solve(x**2 - 1")
    assert lines[-1].startswith(("IndexError", "TypeError", "ValueError"))
    assert "/" not in "\n".join(lines[:2]) and ".py" not in result.output and len(lines) == 4


def test_error_keeps_stdout_printed_before_it(sandbox):
    result = sandbox.run("print('partial')\ndef f():\n    return {}['k']\nf()")
    assert result.output.splitlines()[0] == "partial"
    assert '  File "<code>", line 3, in f' in result.output
    assert result.output.endswith("KeyError: 'k'")


def test_syntax_error_is_compact(sandbox):
    result = sandbox.run("x = (1 +\nprint(x)")
    assert result.status == "error"
    assert result.output.splitlines()[-1].startswith("SyntaxError")
    assert '"<code>"' in result.output and "/" not in result.output


def test_output_is_capped_with_a_visible_marker():
    with Sandbox(ExecutorConfig(max_output_chars=100, num_workers=1, warmup=False)) as box:
        result = box.run("for i in range(1000):\n    print(i)")
        assert result.status == "ok"
        assert result.output.startswith("0\n1\n2\n") and result.output.endswith("998\n999")
        assert "characters of output truncated" in result.output
        assert len(result.output) < 100 + 80
        assert box.run("print('x' * 100)").output == "x" * 100


def test_timeout_is_reported_in_one_line(sandbox):
    result = sandbox.run("import time\ntime.sleep(10)", timeout=0.5)
    assert result == ExecResult("timeout", "Timed out after 0.5 seconds.", result.duration_s)
    assert 0.5 <= result.duration_s < 0.5 + GRACE


def test_run_many_is_parallel_and_in_input_order(sandbox):
    codes = [f"import time\ntime.sleep(0.3)\nprint({i} * {i})" for i in range(4)]
    started = time.monotonic()
    results = sandbox.run_many(codes)
    elapsed = time.monotonic() - started
    assert [r.output for r in results] == ["0", "1", "4", "9"]
    assert elapsed < 4 * 0.3  # two workers: about 0.6 s, never the serial 1.2 s
    assert sandbox.run_many([]) == []


def test_run_many_rejects_mismatched_keys(sandbox):
    with pytest.raises(InputError):
        sandbox.run_many(["1", "2"], keys=["a"])


@pytest.mark.parametrize(
    "field,value",
    [("timeout", 0), ("timeout", -1.0), ("max_output_chars", 0), ("memory_mb", "big"), ("num_workers", 0)],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(InputError):
        ExecutorConfig(**{field: value})


def test_bad_preamble_is_an_input_error():
    with (
        Sandbox(ExecutorConfig(preamble="import not_a_module_numina", num_workers=1)) as box,
        pytest.raises(InputError),
    ):
        box.run("1")


def test_custom_preamble_seeds_globals():
    with Sandbox(ExecutorConfig(preamble="from fractions import Fraction\nK = 7", num_workers=1)) as box:
        assert box.run("Fraction(1, 2) + K").output == "15/2"
        assert box.run("sp").output.endswith("NameError: name 'sp' is not defined")


# ---- stateful mode --------------------------------------------------------------------------------------------------


def test_stateful_keeps_state_per_key(stateful):
    assert stateful.run("a = 10", key="c1").status == "ok"
    assert stateful.run("a = 20", key="c2").status == "ok"
    results = stateful.run_many(["a + 1", "a + 2", "a"], keys=["c1", "c2", "c3"])
    assert [r.output for r in results[:2]] == ["11", "22"]
    assert results[2].output.endswith("NameError: name 'a' is not defined")


def test_stateful_timeout_restarts_and_says_state_was_lost(stateful):
    assert stateful.run("b = 5", key="t").status == "ok"
    result = stateful.run("while True:\n    pass", key="t")
    assert result.status == "timeout"
    assert result.output == f"Timed out after {TIMEOUT:g} seconds.\n{STATE_LOST}"
    assert stateful.run("b", key="t").output.endswith("NameError: name 'b' is not defined")


def test_forget_drops_the_interpreter(stateful):
    stateful.run("z = 1", key="f")
    stateful.forget("f")
    assert stateful.run("z", key="f").output.endswith("NameError: name 'z' is not defined")
    stateful.forget("never-used")


def test_keys_are_ignored_when_not_stateful(sandbox):
    sandbox.run("q = 1", key="k")
    assert sandbox.run("q", key="k").status == "error"


# ---- the default sandbox --------------------------------------------------------------------------------------------


def test_run_code_and_run_codes_work_from_a_worker_thread():
    box: dict = {}

    def call() -> None:
        box["one"] = run_code("print(6 * 7)", timeout=2.0)
        box["many"] = run_codes(["1", "x = 1/0", "import time\ntime.sleep(5)"], timeout=0.5)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert box["one"].output == "42"
    assert [r.status for r in box["many"]] == ["ok", "error", "timeout"]


def test_default_sandbox_is_cleaned_up_at_exit(tmp_path):
    script = textwrap.dedent(
        """
        import os, tempfile
        from numina_kit.sandbox.pool import run_code, default_sandbox
        print(run_code("print(1)").output)
        box = default_sandbox()
        print(box._root)
        print(" ".join(str(w.proc.pid) for w in box._workers if w.proc is not None))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    output, root, pids = done.stdout.splitlines()
    assert output == "1"
    assert not Path(root).exists()
    assert all(
        not psutil.pid_exists(int(pid)) or psutil.Process(int(pid)).status() == "zombie" for pid in pids.split()
    )


# ---- hostile programs -----------------------------------------------------------------------------------------------

HOSTILE = [
    ("infinite loop", "while True:\n    pass", {"timeout"}),
    (
        "ignores SIGINT and SIGTERM",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass",
        {"timeout"},
    ),
    ("memory bomb", "a = []\nwhile True:\n    a.append(bytearray(10**8))", {"killed"}),
    ("one huge allocation", "x = bytearray(64 * 2**30)", {"killed"}),
    ("fork bomb", "import os\nwhile True:\n    os.fork()", {"killed", "timeout"}),
    (
        "thread spam",
        "import threading, time\nfor _ in range(100000):\n    threading.Thread(target=time.sleep, args=(60,)).start()",
        {"killed"},
    ),
    ("huge output", "while True:\n    print('x' * 1000)", {"killed"}),
    ("one huge print", "print('x' * 50_000_000)", {"killed"}),
    ("deep recursion", "def f(n):\n    return f(n + 1)\nf(0)", {"error"}),
    ("segfault through ctypes", "import ctypes\nctypes.string_at(0)", {"killed"}),
    ("os._exit", "import os\nprint('bye')\nos._exit(3)", {"error"}),
    ("os._exit(0)", "import os\nprint('bye')\nos._exit(0)", {"ok"}),
    ("sys.exit", "import sys\nprint('bye')\nsys.exit(0)", {"ok"}),
    (
        "kill the parent",
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('alive')",
        {"error", "killed"},
    ),
    ("kill every process", "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('alone')", {"ok"}, "uid_mode"),
    ("write outside the working directory", f"open({str(ESCAPE_TMP)!r}, 'w').write('x')", {"error"}, "fs_isolated"),
    ("write into the repository", f"open({str(ESCAPE_REPO)!r}, 'w').write('x')", {"error"}, "uid_mode"),
    (
        "read environment secrets",
        "import os\nprint(dict(os.environ))\nfor p in ('/proc/1/environ', f'/proc/{os.getppid()}/environ'):\n"
        "    try:\n        print(open(p, 'rb').read())\n    except OSError as e:\n        print(e)",
        {"ok"},
    ),
    ("input()", "x = input()", {"error"}),
    ("sleep past the timeout", "import time\ntime.sleep(30)", {"timeout"}),
    ("leave a child running", "import subprocess\nsubprocess.Popen(['sleep', '300'])\nprint('started')", {"ok"}),
    (
        "setsid escapee",
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(300)\n"
        "    os._exit(0)\nprint('forked')",
        {"ok"},
    ),
    ("atexit hook that hangs", "import atexit, time\natexit.register(time.sleep, 300)\nprint('registered')", {"ok"}),
    ("huge file", "open('big', 'wb').write(b'x' * (200 * 2**20))", {"error", "killed"}),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_hostile_program_is_contained(sandbox, case):
    name, code, statuses, needs = (*case, None)[:4]
    if needs and not sandbox.isolation[needs]:
        pytest.skip(f"{name}: contained only with {needs} (root with namespaces), which this machine does not give")
    started = time.monotonic()
    result = sandbox.run(code)
    elapsed = time.monotonic() - started
    assert result.status in statuses, result
    assert elapsed < TIMEOUT + GRACE
    assert len(result.output) < 2000 and SECRET not in result.output
    assert "/work" not in result.output.replace(str(ESCAPE_REPO), "")
    assert_clean(sandbox)
    assert not ESCAPE_TMP.exists() and not ESCAPE_REPO.exists()
    assert sandbox.run("print('still fine')").output == "still fine"


# Without root's isolation (what a non-root user gets) the same table must still be contained, except the programs that
# only root's isolation stops (run as root without it, these would really fork-bomb or kill the machine's processes).
UNPRIVILEGED = [
    case for case in HOSTILE if len(case) == 3 and case[0] not in ("fork bomb", "thread spam", "huge file")
]


@pytest.fixture(scope="module")
def unprivileged():
    with Sandbox(ExecutorConfig(timeout=TIMEOUT, num_workers=1, memory_mb=384, privileged=False)) as box:
        assert box.isolation == {
            "uid_mode": False,
            "net_isolated": False,
            "fs_isolated": False,
            "python_visible": True,
        }
        yield box


@pytest.mark.parametrize("case", UNPRIVILEGED, ids=[case[0] for case in UNPRIVILEGED])
def test_hostile_program_is_contained_without_root_isolation(unprivileged, case):
    name, code, statuses = case
    if name == "kill the parent":
        statuses = {"killed"}  # same uid: the worker really dies, and is replaced
    started = time.monotonic()
    result = unprivileged.run(code)
    assert result.status in statuses, result
    assert time.monotonic() - started < TIMEOUT + GRACE
    assert_clean(unprivileged)
    assert unprivileged.run("print('still fine')").output == "still fine"


def test_network_is_unreachable_when_isolated(sandbox):
    if not sandbox.isolation["net_isolated"]:
        pytest.skip("no network namespace here (not root, or unshare is forbidden): network is not isolated")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        result = sandbox.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.5)")
    assert result.status == "error" and "Error" in result.output.splitlines()[-1]


def test_root_runs_drop_privileges(sandbox):
    if not sandbox.isolation["uid_mode"]:
        pytest.skip("not root: blocks run as the caller's user (see docs/executor.md)")
    uid = int(sandbox.run("import os\nos.getuid()").output)
    assert uid >= 1_000_000
    assert sandbox.run("import os\nprint(os.access('/etc/passwd', os.W_OK))").output == "False"


def test_working_directory_is_private_and_deleted(sandbox):
    first = sandbox.run("import os\nopen('note.txt', 'w').write('hi')\nprint(os.getcwd())").output
    second = sandbox.run("import os\nprint(os.getcwd(), os.listdir('.'))").output
    assert first != second.split()[0]
    assert second.endswith("[]")
    assert_clean(sandbox)


def test_worker_killed_from_outside_is_replaced_and_leaves_nothing(sandbox):
    if not sandbox.isolation["uid_mode"]:
        pytest.skip("escapees of a killed worker are found by uid, which needs root")
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(300)\ntime.sleep(300)"
    with Sandbox(ExecutorConfig(timeout=30, num_workers=1)) as box:
        assert box.isolation["uid_mode"]
        worker = box._workers[0]
        uids = {1_000_000 + pid for pid in worker.live}  # the spare that will run the block
        threading.Timer(1.0, lambda: os.kill(worker.proc.pid, 9)).start()
        started = time.monotonic()
        result = box.run(code)
        assert result.status == "killed" and time.monotonic() - started < 5
        owned = lambda: [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids]  # noqa: E731
        assert settle(owned) == []
        assert box.run("print('replaced')").output == "replaced"
