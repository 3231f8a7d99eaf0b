"""The `workforce` bootstrap script finds a suitable Python or stops with a clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.aiworkforce.helpers import BASE_DIR


def _fake_python(bin_dir: Path, name: str, version: tuple[int, int]) -> None:
    """A stand-in interpreter that reports the given version to the script's check."""
    script = bin_dir / name
    ok = 0 if version >= (3, 12) else 1
    script.write_text(f"#!/bin/sh\n# pretends to be Python {version[0]}.{version[1]}\nexit {ok}\n")
    script.chmod(0o755)


def _run(tmp_path: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(BASE_DIR / "workforce", checkout / "workforce")
    (checkout / "requirements").mkdir()
    (checkout / "requirements" / "base.txt").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in (
        "bash",
        "dirname",
        "sha256sum",
        "cut",
        "cat",
        "ls",
        "sort",
        "rm",
        "id",
        "basename",
    ):
        path = shutil.which(tool)
        if path:
            os.symlink(path, bin_dir / tool)
    _fake_python(bin_dir, "python3", (3, 11))
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path / "home"), **env_extra}
    return subprocess.run(
        ["bash", str(checkout / "workforce"), "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_stops_with_a_clear_message_when_no_python_312_exists(tmp_path):
    result = _run(tmp_path, {"PYENV_ROOT": str(tmp_path / "no-pyenv")})
    assert result.returncode != 0
    assert (
        "AI Workforce needs Python 3.12 or newer and none was found on PATH or under pyenv"
        in result.stderr
    )
    assert "PYTHON=/path/to/python3.12 ./workforce run" in result.stderr
    assert not (tmp_path / "checkout" / ".venv").exists()


def test_refuses_an_unsuitable_python_given_explicitly(tmp_path):
    bin_dir = tmp_path / "old"
    bin_dir.mkdir()
    _fake_python(bin_dir, "python3.11", (3, 11))
    result = _run(tmp_path, {"PYTHON": str(bin_dir / "python3.11")})
    assert result.returncode != 0
    assert "is not a Python 3.12 or newer" in result.stderr
