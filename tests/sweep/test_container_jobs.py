"""SLURM jobs inside real container runtimes (CI: scripts/local-containers.sh start + image).

* docker: the project's own image (built from the Dockerfile), each job's Python inside it; the
  wrapper removes the container on scancel; a preempted job requeues from the host (the image has
  no scontrol); a permission failure in a bind-mounted folder is one line.
* charliecloud (ch-run): a Debian image folder with this checkout's virtualenv bound read-only.
* apptainer: not packaged for Debian 12; runs where the binary exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from medtl.sweep import plan_sweep, run_sweep
from tests.sweep.conftest import write_spec
from tests.sweep.test_executors import metrics_of
from tests.sweep.test_slurm_cluster import (  # noqa: F401 (fixtures)
    LONG,
    cancel_leftover_jobs,
    cluster,
    settled,
    submit,
    wait_until,
)

pytestmark = [pytest.mark.slurm, pytest.mark.container, pytest.mark.timeout(900)]

IMAGE = os.environ.get("MEDTL_TEST_IMAGE", "medtl:ci")
CONTAINERS = Path(os.environ.get("MEDTL_CONTAINERS_DIR", "/var/tmp/medtl-containers"))


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check)


@pytest.fixture(scope="module")
def docker_image():
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed (scripts/local-containers.sh start)")
    if "DOCKER_HOST" not in os.environ and (CONTAINERS / "run" / "docker.sock").exists():
        os.environ["DOCKER_HOST"] = f"unix://{CONTAINERS / 'run' / 'docker.sock'}"
    if docker("info", check=False).returncode != 0:
        pytest.skip("no Docker daemon answers (scripts/local-containers.sh start)")
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.skip(f"image {IMAGE} not built (scripts/local-containers.sh image)")
    return IMAGE


def submit_refused(spec: Path, out: Path, *extra: str) -> str:
    from tests.sweep.test_slurm_cluster import PROFILE, app, runner

    args = ["sweep", str(spec), "--slurm", "--profile", str(PROFILE), "--out", str(out), *extra]
    result = runner.invoke(app, [*args, "--container-runtime", "charliecloud"])
    assert result.exit_code == 2, result.output
    return result.stderr


def containers_of(job: str) -> list[str]:
    return docker("ps", "-a", "-q", "--filter", f"name=medtl-{job}").stdout.split()


def no_containers_soon(job: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while containers_of(job) and time.monotonic() < deadline:
        time.sleep(0.5)
    return containers_of(job) == []


def test_jobs_run_inside_the_projects_docker_image(spec_dir, docker_image):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1]})
    run_sweep(plan_sweep(path, out=spec_dir / "local"))
    job = submit(path, spec_dir / "docker", "--container", docker_image, "--container-runtime", "docker")
    rows = wait_until(spec_dir / "docker" / "study", settled, timeout=300)
    assert [r.state for r in rows] == ["done", "done"], rows
    for row in rows:
        status = json.loads((spec_dir / "docker" / "study" / row.run_id / "status.json").read_text())
        assert status["container"] == "docker" and status["python"].startswith("/opt/medtl/.venv/")
        assert status["slurm_job_id"].startswith(f"{job}_")
    # the image's own install (same torch build) computes what this checkout computes
    assert metrics_of(spec_dir / "docker" / "study") == metrics_of(spec_dir / "local" / "study")
    assert no_containers_soon(job)  # --rm, and the wrapper's cleanup (runs end before their process)


def test_scancel_removes_the_docker_container(spec_dir, docker_image):
    path = write_spec(spec_dir, base={**LONG, "phase_epochs": {"all": 500}})
    job = submit(path, spec_dir / "out", "--container", docker_image, "--container-runtime", "docker")
    sweep_dir = spec_dir / "out" / "study"
    deadline = time.monotonic() + 120
    while not containers_of(job) and time.monotonic() < deadline:
        time.sleep(1)
    assert containers_of(job), "the job's container never started"
    subprocess.run(["scancel", job], check=True)
    assert no_containers_soon(job), "the container outlived scancel"
    [row] = wait_until(sweep_dir, lambda rows: rows[0].slurm_state == "CANCELLED", timeout=60)
    assert row.state == "cancelled"


def test_a_preempted_docker_job_requeues_from_the_host(spec_dir, docker_image):
    base = {**LONG, "phase_epochs": {"all": 12}}
    path = write_spec(spec_dir, base=base)
    job = submit(path, spec_dir / "out", "--container", docker_image, "--container-runtime", "docker")
    sweep_dir = spec_dir / "out" / "study"
    [run_id] = [p.name for p in sweep_dir.iterdir() if (p / "config.toml").is_file()]
    resume = sweep_dir / run_id / "checkpoints" / "resume.pt"
    deadline = time.monotonic() + 180
    while not resume.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert resume.exists()
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    [row] = wait_until(sweep_dir, settled, timeout=300)
    assert row.state == "done" and row.attempts >= 2, row
    log = "".join(p.read_text() for p in (sweep_dir / ".slurm").glob(f"{job}_*_log.*"))
    assert "requeue of" in log and "requested from the host" in log  # the shim, inside the image
    run_sweep(plan_sweep(write_spec(spec_dir, "reference", base=base), out=spec_dir / "ref"))
    assert metrics_of(sweep_dir) == metrics_of(spec_dir / "ref" / "reference")


def test_permission_failure_in_a_bind_mounted_folder_is_one_line(tmp_path, docker_image):
    folder = tmp_path / "work"
    folder.mkdir(mode=0o755)  # owned by root: uid 1234 cannot write there
    result = docker(
        "run",
        "--rm",
        "--user",
        "1234:1234",
        "-v",
        f"{folder}:/work",
        docker_image,
        "prepare",
        "phantom",
        "brats",
        "/work/raw",
        "--subjects",
        "2",
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: /work") and "permission denied) (uid 1234 in the container" in line
    assert "--user $(id -u):$(id -g)" in line


def test_the_image_is_healthy_and_says_how_it_checks(docker_image):
    assert docker("run", "--rm", docker_image, "doctor", "--quiet", check=False).returncode == 0
    config = json.loads(docker("image", "inspect", docker_image).stdout)[0]["Config"]
    assert config["Healthcheck"]["Test"] == ["CMD", "medtl", "doctor", "--quiet"]
    assert config["User"] == "10001" and config["Entrypoint"] == ["medtl"]


@pytest.fixture(scope="module")
def charliecloud_image():
    if shutil.which("ch-run") is None:
        pytest.skip("charliecloud is not installed (scripts/local-containers.sh start)")
    rootfs = CONTAINERS / "rootfs"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        pytest.skip(f"no Debian image folder at {rootfs} (scripts/local-containers.sh image)")
    return rootfs


def test_jobs_run_under_charliecloud_with_the_checkout_bound_in(spec_dir, charliecloud_image, monkeypatch):
    # This image has no medtl: this checkout and its virtualenv are bound read-only at the same paths.
    repo = Path(__file__).parents[2]
    python_home = Path(sys.base_prefix)
    path = write_spec(spec_dir, base={"data": "store"})
    binds = ("--bind", str(repo), "--bind", str(python_home))
    # A folder no image has a mount point for, whatever earlier runs left in the shared rootfs.
    absent = spec_dir / f"absent-{uuid.uuid4().hex}"
    absent.mkdir()
    refused = submit_refused(
        path, spec_dir / "out", "--container", str(charliecloud_image), *binds, "--bind", str(absent)
    )
    assert "the image has no mount point for" in refused
    store = Path(os.path.realpath(spec_dir / "store"))
    for folder in (repo, python_home, spec_dir / "out" / "study", store):
        (charliecloud_image / str(folder).lstrip("/")).mkdir(parents=True, exist_ok=True)  # mount points
    monkeypatch.setenv("USER", os.environ.get("USER", "root"))  # ch-run insists on $USER
    submit(
        path, spec_dir / "out", "--container", str(charliecloud_image), "--container-runtime", "charliecloud",
        *binds, "--container-python", sys.executable,
    )  # fmt: skip
    [row] = wait_until(spec_dir / "out" / "study", settled, timeout=240)
    assert row.state == "done", row
    status = json.loads((spec_dir / "out" / "study" / row.run_id / "status.json").read_text())
    assert status["container"] == "charliecloud"


@pytest.mark.skipif(shutil.which("apptainer") is None, reason="apptainer is not packaged for Debian 12")
def test_jobs_run_inside_an_apptainer_sandbox(spec_dir, docker_image, tmp_path):
    sandbox = tmp_path / "medtl-sandbox"
    subprocess.run(
        ["apptainer", "build", "--sandbox", str(sandbox), f"docker-daemon://{docker_image}"], check=True
    )
    path = write_spec(spec_dir, base={"data": "store"})
    submit(path, spec_dir / "out", "--container", str(sandbox))
    [row] = wait_until(spec_dir / "out" / "study", settled, timeout=240)
    assert row.state == "done"
    status = json.loads((spec_dir / "out" / "study" / row.run_id / "status.json").read_text())
    assert status["container"] == "apptainer"
