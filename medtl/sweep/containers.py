"""Running each SLURM job's Python inside a container.

submitit starts ``<python> -u -m submitit.core._submit FOLDER`` in every task; for a container that
"python" is a launcher script written into the sweep's ``.slurm/bin`` folder:

* apptainer: ``apptainer exec [--nv] --bind ... IMAGE enter ...`` (a .sif file or a sandbox folder);
* charliecloud: ``ch-run -b ... IMAGE -- enter ...`` (an unpacked image folder; a plain child process);
* docker / podman: ``RUNTIME run --init ...`` under a wrapper that forwards SLURM's signals once and
  removes the container when the step ends — a container belongs to its daemon, not to the job, so
  without this it keeps running after ``scancel``;
* pyxis: srun's own ``--container-image`` / ``--container-mounts``.

``enter`` runs inside the container: it puts a ``scontrol`` shim first on PATH, because SLURM's
commands are usually not in the image. submitit's requeue (``scontrol requeue JOB``) then leaves a
request file that the batch script's teardown, on the host, carries out with the real scontrol.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from medtl.errors import ConfigError, InputError

Runtime = Literal["apptainer", "docker", "podman", "charliecloud", "pyxis"]
RUNTIMES: tuple[str, ...] = ("apptainer", "docker", "podman", "charliecloud", "pyxis")
EXECUTABLE = {"apptainer": "apptainer", "docker": "docker", "podman": "podman", "charliecloud": "ch-run"}
REQUEUE_DIR = "requeue"
# Passed into docker/podman containers (apptainer and charliecloud pass the whole environment).
PASSED_ENV = (
    "SLURM_*|SUBMITIT_*|MEDTL_*|OMP_*|MKL_*|NCCL_*|TORCH_*|MASTER_ADDR|MASTER_PORT|RANK|WORLD_SIZE"
    "|LOCAL_RANK|LOCAL_WORLD_SIZE|PYTHONUNBUFFERED|HF_HUB_OFFLINE"
)


class ContainerSpec(BaseModel):
    """Where and how each job's Python runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field(description="a .sif file or sandbox folder, an image folder, or an image name")
    runtime: Runtime = Field(description="apptainer | docker | podman | charliecloud | pyxis")
    binds: tuple[str, ...] = Field((), description="more host paths to mount at the same place")
    python: str = Field("python3", description="the Python inside the image")
    options: tuple[str, ...] = Field((), description="more options for the runtime's run command")
    gpus: bool = Field(False, description="expose the job's GPUs (--nv, --gpus)")


def detect_runtime(image: str, runtime: str | None) -> str:
    """The runtime for ``image``: the one asked for, else apptainer for a .sif file or a folder."""
    if runtime:
        if runtime not in RUNTIMES:
            raise ConfigError(f"unknown container runtime '{runtime}'; valid: {', '.join(RUNTIMES)}")
        return runtime
    if image.endswith(".sif") or Path(image).is_dir():
        return "apptainer"
    raise ConfigError(
        f"--container {image}: not an Apptainer image (.sif file or sandbox folder); "
        "for an image name give --container-runtime docker, podman or pyxis"
    )


def check_image(spec: ContainerSpec) -> None:
    """InputError (one line) when the image is missing, before anything is submitted."""
    if spec.runtime in ("apptainer", "charliecloud"):
        path = Path(spec.image)
        if not path.exists():
            raise InputError(path, f"container image not found ({spec.runtime})")
        if spec.runtime == "charliecloud" and not path.is_dir():
            raise InputError(path, "a charliecloud image is an unpacked image folder (ch-convert IMAGE DIR)")
        return
    if spec.runtime == "pyxis":
        looks_like_file = spec.image.endswith((".sqsh", ".squashfs")) or spec.image.startswith(("/", "./"))
        if looks_like_file and not Path(spec.image).exists():
            raise InputError(spec.image, "container image not found (pyxis)")
        return
    exe = shutil.which(EXECUTABLE[spec.runtime])
    if exe is None:
        return  # a login node without the runtime: the compute nodes have it, the job will say
    found = subprocess.run([exe, "image", "inspect", spec.image], capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        raise InputError(spec.image, f"container image not found ({spec.runtime} image inspect)")


def check_mount_points(spec: ContainerSpec, paths: Iterable[str]) -> None:
    """ch-run (before charliecloud 0.32) binds only onto folders that exist in the image."""
    if spec.runtime != "charliecloud":
        return
    for path in bind_paths(paths):
        if not (Path(spec.image) / path.lstrip("/")).is_dir():
            raise InputError(
                spec.image,
                f"the image has no mount point for {path} (ch-run needs one: mkdir -p {spec.image}{path})",
            )


def bind_paths(paths: Iterable[str | Path]) -> list[str]:
    """Absolute host paths to mount, without any that lies inside another."""
    unique = sorted({str(Path(p).expanduser().resolve()) for p in paths})
    kept: list[str] = []
    for path in unique:
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


ENTER = """#!/bin/sh
# Generated by medtl sweep; runs inside the container. SLURM's scontrol is usually not in the image:
# the shim first on PATH turns submitit's `scontrol requeue JOB` into a request the host carries out.
PATH="{shim}:$PATH"
export PATH
exec {python} "$@"
"""

SHIM = """#!/bin/sh
# Generated by medtl sweep: scontrol inside a container only asks the host to requeue this job.
if [ "$1" != requeue ] || [ -z "$2" ]; then
  echo "medtl's scontrol shim only requeues (got: $*)" >&2
  exit 2
fi
dir="${{MEDTL_REQUEUE_DIR:-{requeue}}}"
echo "$2" > "$dir/${{SLURM_JOB_ID:?}}"
echo "requeue of $2 requested from the host"
"""

DOCKER = """#!/bin/bash
# Generated by medtl sweep: submitit's python inside a {runtime} container, for one SLURM task.
# A container belongs to the {runtime} daemon, not to this job: on scancel, the time limit or the end
# of the task this wrapper removes it. SLURM's USR2 is forwarded once (--sig-proxy=false, so the CLI
# does not forward it a second time).
set -u
name="medtl-${{SLURM_JOB_ID:-nojob}}-${{SLURM_PROCID:-0}}-$$"
envs=()
for v in $(compgen -e); do
  case "$v" in {passed}) envs+=(-e "$v") ;; esac
done
gpus=()
if [ {gpus} = 1 ] && [ -n "${{CUDA_VISIBLE_DEVICES:-}}" ]; then
  {gpu_flags}
fi
stop() {{ {exe} rm -f "$name" >/dev/null 2>&1 || true; }}
trap '{exe} kill --signal USR2 "$name" >/dev/null 2>&1 || true' USR2
trap 'stop; exit 143' TERM
trap 'stop; exit 130' INT
trap stop EXIT
{exe} run --rm --name "$name" --init --sig-proxy=false --network host --ipc host \\
  --user "$(id -u):$(id -g)" -e HOME=/tmp "${{envs[@]}}" "${{gpus[@]}}" \\
  {mounts} {options} \\
  --entrypoint {enter} {image} "$@" &
child=$!
while :; do
  wait "$child"
  rc=$?
  kill -0 "$child" 2>/dev/null || break  # wait was cut short by a trapped signal: keep waiting
done
exit "$rc"
"""

GPU_FLAGS = {
    "docker": 'gpus=(--gpus "\\"device=$CUDA_VISIBLE_DEVICES\\"")',
    "podman": 'for g in ${CUDA_VISIBLE_DEVICES//,/ }; do gpus+=(--device "nvidia.com/gpu=$g"); done',
}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)


class Launch(BaseModel):
    """What submitit needs to run a job inside the container."""

    python: str  # submitit's python command
    srun_args: list[str] = []
    setup: list[str] = []
    teardown: list[str] = []


def prepare_launch(
    spec: ContainerSpec, bin_dir: Path, binds: Iterable[str | Path], ro: Iterable[str]
) -> Launch:
    """Write the launcher scripts under ``bin_dir`` and say how submitit calls them.

    ``binds`` are mounted read-write at the same path, ``ro`` (stores, checkpoints) read-only.
    """
    bin_dir = bin_dir.resolve()
    requeue = bin_dir.parent / REQUEUE_DIR
    requeue.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "shim"
    _write(shim / "scontrol", SHIM.format(requeue=requeue))
    enter = bin_dir / "enter"
    _write(enter, ENTER.format(shim=shim, python=spec.python))
    rw = bind_paths([*binds, *spec.binds, bin_dir.parent])
    read_only = [p for p in bind_paths(ro) if not any(p == w or p.startswith(w + "/") for w in rw)]
    launch = Launch(
        python=str(bin_dir / "container-python"),
        setup=[f"export MEDTL_REQUEUE_DIR={shlex.quote(str(requeue))}"],
        teardown=[
            "medtl_rc=$?  # srun's exit status: the job's, whatever the teardown does",
            # submitit asked (through the shim) for a requeue that only the host can do
            'req="$MEDTL_REQUEUE_DIR/$SLURM_JOB_ID"; if [ -s "$req" ]; then '
            'scontrol requeue "$(cat "$req")" && rm -f "$req"; fi',
            'exit "$medtl_rc"',
        ],
    )
    if spec.runtime == "pyxis":  # srun itself starts the task in the container
        mounts = ",".join([*(f"{p}:{p}" for p in rw), *(f"{p}:{p}:ro" for p in read_only)])
        launch.python = str(enter)
        launch.srun_args = [f"--container-image={spec.image}", f"--container-mounts={mounts}", *spec.options]
    else:
        _write(bin_dir / "container-python", launcher_script(spec, str(enter), rw, read_only))
    return launch


def launcher_script(spec: ContainerSpec, enter: str, rw: list[str], read_only: list[str]) -> str:
    """The host-side script submitit calls as "python": the runtime's run command around ``enter``."""
    q = shlex.quote
    opts = " ".join(q(o) for o in spec.options)
    if spec.runtime == "apptainer":
        mounts = ",".join([*(f"{p}:{p}" for p in rw), *(f"{p}:{p}:ro" for p in read_only)])
        nv = "--nv " if spec.gpus else ""
        return (
            "#!/bin/bash\n# Generated by medtl sweep: submitit's python inside Apptainer.\n"
            f'exec apptainer exec {nv}--bind {q(mounts)} {opts} {q(spec.image)} {q(enter)} "$@"\n'
        )
    if spec.runtime == "charliecloud":
        mounts = " ".join(f"-b {q(p)}:{q(p)}" for p in [*rw, *read_only])
        return (
            "#!/bin/bash\n# Generated by medtl sweep: submitit's python inside charliecloud (ch-run).\n"
            f'exec ch-run {mounts} {opts} {q(spec.image)} -- {q(enter)} "$@"\n'
        )
    mounts = " ".join([*(f"-v {q(p)}:{q(p)}" for p in rw), *(f"-v {q(p)}:{q(p)}:ro" for p in read_only)])
    return DOCKER.format(
        runtime=spec.runtime,
        exe=EXECUTABLE[spec.runtime],
        passed=PASSED_ENV,
        gpus=1 if spec.gpus else 0,
        gpu_flags=GPU_FLAGS[spec.runtime],
        mounts=mounts,
        options=opts,
        image=q(spec.image),
        enter=q(enter),
    )
