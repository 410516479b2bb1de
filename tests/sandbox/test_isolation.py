"""Tests for numina_kit.sandbox.isolation in every host CI can reach: the mode each host gets, that `Sandbox.isolation`
reports what is true (each guarantee observed from a block), the one-line warnings, and the containment table of
tests/sandbox/containment.py. Root runs in this process; container root (Docker's default capabilities), container
root with Docker's seccomp rule (no namespaces), a normal user (with a Python it can read) and that user without
user namespaces run the table in a subprocess under those credentials (`numina_kit.sandbox.hosts`). The fast suite
runs the whole table as root and a case or two per guarantee elsewhere; `--runslow` runs the whole table everywhere.
"""

import functools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from numina_kit.errors import InputError
from numina_kit.sandbox.hosts import host_command, user_python
from numina_kit.sandbox.isolation import GUARANTEES, UID_BASE, UIDS_PER_WORKER, Isolation
from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
from tests.sandbox import containment
from tests.sandbox.containment import BY_NAME, CASES, FAST, SECRET, Context, make_sandbox, problems_of, settle


ALL = dict.fromkeys(GUARANTEES, True)
NONE = dict.fromkeys(GUARANTEES, False)
# the mode and guarantees each host gets on a Linux machine that allows unprivileged user namespaces (CI, kernel 6.x)
EXPECTED = {
    "root": ("root", ALL),
    "container-root": ("user-namespace", ALL),
    "container-root-seccomp": ("setuid", NONE | {"uid_per_block": True}),
    "user": ("user-namespace", ALL | {"uid_per_block": False}),
    "user-seccomp": ("none", NONE),
}


@pytest.fixture(scope="module")
def context():
    os.environ["NUMINA_KIT_TEST_SECRET"] = SECRET
    try:
        with Context() as context:
            yield context
    finally:
        os.environ.pop("NUMINA_KIT_TEST_SECRET", None)


@pytest.fixture(scope="module")
def sandbox(context):
    with make_sandbox() as box:
        yield box


@pytest.fixture(scope="module")
def baseline(sandbox):
    return containment.private_listing(sandbox) if sandbox.isolation.private_tmp else None


def test_root_gets_every_guarantee(sandbox, context):
    if os.geteuid() != 0:
        pytest.skip("not root: the root mode cannot be tested here")
    isolation = sandbox.isolation
    assert (isolation.mode, guarantees(isolation)) == EXPECTED["root"]
    assert isolation.missing() == []
    assert containment.truth(sandbox, context) == {}


@pytest.mark.parametrize("name", [case.name for case in CASES])
def test_root_contains(sandbox, context, baseline, name):
    case = BY_NAME[name]
    if case.needs and not any(getattr(sandbox.isolation, need) for need in case.needs):
        pytest.skip(f"{name}: contained only with {' or '.join(case.needs)}, which this machine does not give")
    assert problems_of(sandbox, case, context, baseline) == []


def guarantees(isolation: Isolation) -> dict[str, bool]:
    return {name: getattr(isolation, name) for name in GUARANTEES}


@functools.cache
def user_namespaces_allowed() -> bool:
    """Whether a normal user may create a user namespace on this machine (a sysctl or AppArmor may forbid it)."""
    probe = "import ctypes, sys; sys.exit(ctypes.CDLL(None).unshare(0x10000000))"  # CLONE_NEWUSER
    command = host_command("user", [sys.executable, "-c", probe])
    return subprocess.run(command.argv, cwd="/", capture_output=True, timeout=60, **command.popen).returncode == 0


def run_in_host(host: str, cases: list[str]) -> dict:
    """Run the containment script under `host`'s credentials; its report (or a skip saying why it cannot run)."""
    if os.geteuid() != 0:
        pytest.skip(f"reproducing the {host!r} host needs root (the tests run as root in CI)")
    if host.startswith("user"):
        try:
            user_python()
        except (FileNotFoundError, subprocess.CalledProcessError) as error:
            pytest.skip(f"no Python a normal user can run here: {error}")
    if host in ("user", "container-root") and not user_namespaces_allowed():
        pytest.skip("this kernel forbids unprivileged user namespaces, so this host gets the blocked mode")
    script = Path(containment.__file__).read_text()
    command = host_command(host, [sys.executable, "-c", script])
    env = command.popen["env"] | {"NUMINA_KIT_REPO": str(containment.REPO)}
    done = subprocess.run(
        command.argv, input=json.dumps({"cases": cases, "truth": True}), capture_output=True, text=True,
        timeout=600, cwd="/", **(command.popen | {"env": env}),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("host", [host for host in EXPECTED if host != "root"])
def test_host_gets_its_mode_and_contains_one_case_per_guarantee(host):
    report = run_in_host(host, FAST)
    isolation = Isolation(**report["isolation"])
    assert (isolation.mode, guarantees(isolation)) == EXPECTED[host], isolation
    assert report["truth"] == {}, "isolation reports a guarantee that a block sees otherwise"
    assert {name: problems for name, problems in report["problems"].items() if problems} == {}
    assert len(isolation.missing()) == list(guarantees(isolation).values()).count(False)
    assert sorted(report["problems"]) == sorted(contained_here(FAST, isolation))


@pytest.mark.slow
@pytest.mark.parametrize("host", [host for host in EXPECTED if host != "root"])
def test_host_contains_every_case(host):
    report = run_in_host(host, [case.name for case in CASES])
    isolation = Isolation(**report["isolation"])
    assert {name: problems for name, problems in report["problems"].items() if problems} == {}
    assert sorted(report["problems"]) == sorted(contained_here([case.name for case in CASES], isolation))


def contained_here(names: list[str], isolation: Isolation) -> list[str]:
    """The cases a host with `isolation` must contain (those whose needed guarantees it has)."""
    return [
        name for name in names if not BY_NAME[name].needs or any(getattr(isolation, n) for n in BY_NAME[name].needs)
    ]


def test_blocked_namespaces_say_so_in_one_line_each():
    report = run_in_host("user-seccomp", ["import a module the worker never loaded"])
    lines = Isolation(**report["isolation"]).missing()
    assert len(lines) == len(GUARANTEES)
    assert all(line.startswith("sandbox: ") and "user namespaces are blocked" in line for line in lines)
    assert any(line.startswith("sandbox: no network isolation") for line in lines)


def test_turned_off_isolation_is_reported():
    with Sandbox(ExecutorConfig(num_workers=1, warmup=False, privileged=False)) as box:
        assert (box.isolation.mode, guarantees(box.isolation)) == ("none", NONE)
        assert all("privileged=False" in line for line in box.isolation.missing())
        assert box.run("import colorsys\nprint('ok')").output == "ok"


def test_worker_killed_from_outside_leaves_nothing():
    """Everything a block started dies with its worker (PID 1 of their namespace, or found by uid without one)."""
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(300)\ntime.sleep(300)"
    with Sandbox(ExecutorConfig(timeout=30, num_workers=1, warmup=False)) as box:
        if not box.isolation.uid_per_block:
            pytest.skip("blocks run under the caller's uid here: their escapees cannot be told apart by uid")
        worker = box._workers[0]
        uids = range(worker.info["uid_base"], worker.info["uid_base"] + UIDS_PER_WORKER)
        threading.Timer(1.0, lambda: os.kill(worker.proc.pid, 9)).start()
        started = time.monotonic()
        result = box.run(code)
        assert result.status == "killed" and time.monotonic() - started < 5
        owned = lambda: [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real in uids]  # noqa: E731
        assert settle(owned) == []
        assert box.run("print('replaced')").output == "replaced"
        assert worker.info["uid_base"] >= UID_BASE


def test_an_unknown_host_is_an_input_error():
    with pytest.raises(InputError, match="unknown host 'laptop'"):
        host_command("laptop", [sys.executable, "-c", "pass"])
