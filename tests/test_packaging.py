"""The wheel on its own: built from a copy of the sources, installed into a fresh venv without the dev extras
(`pip install fatcontroller-*.whl`, as a production install does), it holds the migrations and the browser
sandbox's page, pulls in no test tool, imports every module, and its commands run from that venv.

Slow (~30 s: a wheel build and an install of the runtime dependencies), hence `slow`; it runs in `make test`.
pip reaches the package index as it does for `make`'s own install.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "flows", "integrations", "storage", "sandbox", "demo", "web", "report")
# Modules of the dev extras (and of the test suite) that the runtime must never need.
DEV_ONLY = ("pytest", "pytest_asyncio", "pytest_timeout", "moto", "ruff", "mypy", "importlinter", "playwright",
            "ecs_deploy")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def fatcontroller(self) -> Path:
        return self.venv / "bin" / "fatcontroller"


def _run(command: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess:
    # Nothing of the dev venv leaks in: no PYTHONPATH, no VIRTUAL_ENV, and a working directory outside the repo.
    # Bytecode is written (the install compiled nothing): each module is compiled once, by the first command.
    base = {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")}
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("packaging")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources, and leftovers of an
    # editable install must not stand in for what the wheel should carry.
    sources = work / "src"
    shutil.copytree(ROOT, sources, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", "*.db"))
    built = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", work / "dist",
                  sources], cwd=work)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("fatcontroller-*.whl")
    venv = work / "venv"
    # No pip of its own: the venv then holds the wheel and its runtime dependencies only. The dev venv's pip
    # installs into it (--python), compiling nothing (--no-compile: ~30 s saved; what runs compiles itself).
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    assert made.returncode == 0, made.stderr
    done = _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet",
                 "--no-compile", wheel], cwd=work)
    assert done.returncode == 0, done.stderr
    return Installed(wheel, venv)


def test_the_wheel_carries_every_package_the_migrations_and_the_browser_page_and_no_tests(
        installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    expected = {path.relative_to(ROOT).as_posix() for package in PACKAGES
                for path in (ROOT / package).rglob("*.py") if "__pycache__" not in path.parts}
    expected |= {path.relative_to(ROOT).as_posix() for path in (ROOT / "sandbox" / "browser").iterdir()}
    expected.add("storage/migrations/script.py.mako")
    assert expected - names == set()
    dist_info = "-".join(installed.wheel.name.split("-")[:2]) + ".dist-info"
    assert {n.split("/")[0] for n in names} == {*PACKAGES, dist_info}  # no tests/, bench/ or docs/


def test_the_fresh_venv_holds_no_test_tool_and_imports_every_module_from_itself(installed: Installed) -> None:
    check = textwrap.dedent(f"""
        import importlib, importlib.util, pkgutil, sys
        dev = [name for name in {DEV_ONLY!r} if importlib.util.find_spec(name) is not None]
        assert not dev, f"dev-only modules installed: {{dev}}"
        failed = []
        for package in {PACKAGES!r}:
            module = importlib.import_module(package)
            assert module.__file__.startswith(sys.prefix), module.__file__
            for info in pkgutil.walk_packages(module.__path__, package + "."):
                if info.name.startswith("storage.migrations"):
                    continue  # alembic's scripts, run by alembic (db upgrade, below)
                try:
                    importlib.import_module(info.name)
                except Exception as exc:
                    failed.append(f"{{info.name}}: {{type(exc).__name__}}: {{exc}}")
        assert not failed, failed
    """)
    done = _run([installed.python, "-c", check], cwd=installed.venv)
    assert done.returncode == 0, done.stderr


def test_the_installed_commands_run_from_the_fresh_venv(installed: Installed, tmp_path: Path) -> None:
    helped = _run([installed.fatcontroller, "--help"], cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    for command in ("run", "demo", "check-config", "doctor", "db"):
        assert command in helped.stdout

    checked = _run([installed.fatcontroller, "check-config", "--config", ROOT / "app.yaml"], cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "web → app-web" in checked.stdout and checked.stdout.endswith("config ok\n")

    # The migrations travel in the wheel: an empty database gets the whole schema.
    database = tmp_path / "fc.db"
    upgraded = _run([installed.fatcontroller, "db", "upgrade"], cwd=tmp_path,
                    env={"DATABASE_URL": f"sqlite+aiosqlite:///{database}"})
    assert upgraded.returncode == 0, upgraded.stderr
    assert "upgraded the database schema from nothing to revision" in upgraded.stderr
    heads = sorted(p.stem.split("_")[0] for p in (ROOT / "storage" / "migrations" / "versions").glob("0*.py"))
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(heads[-1],)]
