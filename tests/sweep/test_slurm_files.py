"""SLURM profiles, the generated sbatch text (golden files, as submitit tests its own) and the
container launchers: their scripts are valid bash and the requeue shim does only what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medtl.errors import ConfigError
from medtl.sweep import SlurmProfile, load_profile, plan_sweep
from medtl.sweep.api import _submit
from medtl.sweep.containers import ContainerSpec, bind_paths, detect_runtime, prepare_launch
from medtl.sweep.registry import SweepRegistry
from medtl.sweep.slurm import executor_parameters, parse_time
from tests.sweep.conftest import write_spec

GOLDEN = Path(__file__).parent / "golden"
PROFILES = Path(__file__).parents[2] / "slurm" / "profiles"


@pytest.mark.parametrize(
    ("text", "minutes"), [("90", 90), ("01:30:00", 90), ("00:00:30", 1), ("2-00:00:00", 2880), ("1-2", 1560)]
)
def test_slurm_times_in_minutes(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES.glob("*.toml")))
def test_shipped_profiles_are_valid(name):
    profile = load_profile(name, profiles_dir=PROFILES)
    assert profile.timeout_min > 0 and executor_parameters(profile, "x")["timeout_min"] == profile.timeout_min


def test_profile_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown SLURM profile 'gpux' in .*, did you mean 'gpu'"):
        load_profile("gpux", profiles_dir=PROFILES)
    bad = tmp_path / "bad.toml"
    bad.write_text('partition = "gpu"\ngpus = 2\n')
    with pytest.raises(
        ConfigError, match=r"bad.toml: unknown key 'gpus', did you mean 'gpus_per_run'.* \(valid: "
    ):
        load_profile(bad)
    with pytest.raises(ConfigError, match=r"time: Value error, 'soon' is not a SLURM time"):
        load_profile(None, overrides={"time": "soon"})


def test_ddp_profile_asks_for_one_task_per_gpu():
    params = executor_parameters(load_profile("gpu-ddp", profiles_dir=PROFILES), "x")
    assert params["tasks_per_node"] == 4 and params["gpus_per_node"] == 4 and params["nodes"] == 1
    with pytest.raises(ConfigError, match=r"tasks_per_run 3 does not divide over nodes_per_run 2"):
        executor_parameters(SlurmProfile(tasks_per_run=3, nodes_per_run=2), "x")


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch/srun stand-ins on PATH: sbatch answers as SLURM does and submits nothing."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")


def _submitted_text(spec_dir, profile, container=None) -> str:
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1, 2]})
    plan = plan_sweep(path, out=spec_dir / "out")
    registry = SweepRegistry(plan.sweep_dir)
    registry.record(plan.spec, plan.runs)
    submission = _submit(registry, plan, registry.states(), {}, profile, container, "slurm")
    assert submission.job_id == "4242"
    text = (registry.slurm_dir / "4242_submission.sh").read_text()
    return text.replace(str(plan.sweep_dir), "SWEEP").replace(sys.executable, "PYTHON")


def _check_golden(name: str, text: str) -> None:
    golden = GOLDEN / name
    if os.environ.get("MEDTL_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text(), (
        f"regenerate with MEDTL_UPDATE_GOLDEN=1 after checking the diff ({golden})"
    )


def test_sbatch_text_of_an_array_sweep(spec_dir, fake_slurm):
    profile = load_profile(
        "gpu",
        profiles_dir=PROFILES,
        overrides={
            "account": "proj",
            "array_parallelism": 2,
            "sbatch": {"constraint": "a100", "requeue": True},
        },
    )
    _check_golden("array.sbatch", _submitted_text(spec_dir, profile))


def test_sbatch_text_of_a_docker_sweep(spec_dir, fake_slurm):
    profile = SlurmProfile(partition="debug", account="medtl", time="00:20:00", cpus_per_task=1)
    container = ContainerSpec(image="medtl:ci", runtime="docker")
    _check_golden("docker.sbatch", _submitted_text(spec_dir, profile, container))


@pytest.mark.parametrize("runtime", ["apptainer", "charliecloud", "docker", "podman", "pyxis"])
def test_container_launchers_are_valid_scripts(tmp_path, runtime):
    spec = ContainerSpec(image=str(tmp_path / "img"), runtime=runtime, gpus=True, binds=("/data",))
    launch = prepare_launch(spec, tmp_path / "sweep" / ".slurm" / "bin", [tmp_path / "sweep"], ["/stores/a"])
    scripts = [tmp_path / "sweep/.slurm/bin/enter", tmp_path / "sweep/.slurm/bin/shim/scontrol"]
    if runtime == "pyxis":
        assert launch.python.endswith("/enter")
        assert f"--container-image={spec.image}" in launch.srun_args
        assert any(
            a.startswith("--container-mounts=") and "/stores/a:/stores/a:ro" in a for a in launch.srun_args
        )
    else:
        scripts.append(Path(launch.python))
        text = Path(launch.python).read_text()
        assert "/stores/a" in text and "/data" in text and str(tmp_path / "sweep") in text
    for script in scripts:
        assert os.access(script, os.X_OK)
        subprocess.run(["bash", "-n", str(script)], check=True)
    assert any("scontrol requeue" in line for line in launch.teardown)


def test_the_scontrol_shim_only_asks_for_a_requeue(tmp_path):
    launch = prepare_launch(
        ContainerSpec(image="x", runtime="docker"), tmp_path / ".slurm" / "bin", [tmp_path], []
    )
    shim = tmp_path / ".slurm/bin/shim/scontrol"
    requeue = tmp_path / ".slurm/requeue"
    env = {**os.environ, "SLURM_JOB_ID": "77", "MEDTL_REQUEUE_DIR": str(requeue)}
    done = subprocess.run([str(shim), "requeue", "70_7"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and (requeue / "77").read_text().strip() == "70_7"
    refused = subprocess.run([str(shim), "cancel", "70_7"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "only requeues" in refused.stderr
    assert launch.setup == [f"export MEDTL_REQUEUE_DIR={requeue}"]


def test_runtime_detection_and_binds(tmp_path):
    assert detect_runtime("medtl.sif", None) == "apptainer"
    assert detect_runtime(str(tmp_path), None) == "apptainer"  # a sandbox folder
    assert detect_runtime("medtl:latest", "docker") == "docker"
    with pytest.raises(
        ConfigError, match=r"for an image name give --container-runtime docker, podman or pyxis"
    ):
        detect_runtime("medtl:latest", None)
    with pytest.raises(ConfigError, match=r"unknown container runtime 'rkt'"):
        detect_runtime("medtl:latest", "rkt")
    assert bind_paths(["/a/b", "/a", "/c/", "/a/bc"]) == ["/a", "/c"]
