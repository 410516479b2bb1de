"""requirements.txt (the Kaggle wheelhouse) resolves: pip, asked for binary wheels for Kaggle's Python and platform,
finds one set of versions for every pin plus numina_kit's own wheel and its dependencies. An unresolvable pin (vLLM
pinning a torch or transformers that numina_kit excludes) then fails here instead of in the offline notebook.

Slow and networked: it asks the package registry for metadata (nothing is installed).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from numina_kit.kaggle.package import Target, build_own_wheel


REQUIREMENTS = Path(__file__).resolve().parents[2] / "requirements.txt"


def pinned(report: dict) -> dict[str, str]:
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}


@pytest.mark.slow
def test_kaggle_wheelhouse_resolves_with_numina_kit(tmp_path: Path) -> None:
    own = build_own_wheel(tmp_path / "own")
    target = Target()
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:"]
    command += ["--python-version", target.python_version, "--implementation", "cp", "--abi", target.abi]
    for platform in target.platforms():
        command += ["--platform", platform]
    command += ["--quiet", "--report", str(tmp_path / "report.json"), "-r", str(REQUIREMENTS), str(own)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"requirements.txt does not resolve for Kaggle:\n{result.stderr[-3000:]}"
    versions = pinned(json.loads((tmp_path / "report.json").read_text()))
    requirements = {
        name.lower(): version
        for name, _, version in (
            line.split("#")[0].strip().partition("==") for line in REQUIREMENTS.read_text().splitlines()
        )
        if version
    }
    assert requirements, "requirements.txt pins nothing"
    for name, version in requirements.items():
        assert versions.get(name) == version, f"{name}=={version} pinned, {versions.get(name)} resolved"
    assert "numina-kit" in versions or "numina_kit" in versions
