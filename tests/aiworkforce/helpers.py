"""Running the project's own commands in a subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def manage(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=BASE_DIR,
    )
