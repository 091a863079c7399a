"""`medtl doctor`: what this machine offers medtl, checked for real, and what is missing.

Each check runs the thing it reports on (imports torch, asks CUDA and NVML, reads RAPL, calls the
SLURM and container commands, writes into the cache folders), so the table tells what a command
will find. A check is *required* when a command cannot work without it; ``doctor`` fails (exit 1)
when a required check fails. Torch and a writable cache are always required; ``require`` adds more
(``slurm``, ``gpu``, ``apptainer``, ``docker``, ...).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

OK, MISSING, INFO = "ok", "missing", "info"
ALWAYS_REQUIRED = frozenset({"python", "torch", "cache"})
# What each optional part is for, shown in the table.
NEEDED_BY = {
    "gpu": "training on CUDA (--device cuda)",
    "nvml": "measured GPU energy",
    "rapl": "measured CPU energy",
    "slurm": "medtl sweep --slurm",
    "apptainer": "medtl sweep --slurm --container IMAGE.sif",
    "docker": "docker images, --container-runtime docker",
    "podman": "--container-runtime podman",
    "charliecloud": "--container-runtime charliecloud",
    "weights": "--init imagenet",
}
WEIGHTS_OF = ("resnet18", "resnet50", "densenet121", "convnext_tiny", "vit_base_patch16_224")


@dataclass
class Check:
    key: str  # what `require` names
    name: str
    status: str  # ok | missing | info
    detail: str
    needed_by: str = ""
    required: bool = False

    @property
    def failed(self) -> bool:
        return self.required and self.status == MISSING


def _run(args: list[str], timeout: float = 20) -> tuple[int, str]:
    # ch-run refuses to start without $USER, which a container or cron job may not set
    env = {**os.environ, "USER": os.environ.get("USER") or _user()}
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    out = (
        result.stdout.strip()
        if result.returncode == 0
        else f"{result.stderr.strip()} {result.stdout.strip()}"
    )
    return result.returncode, " ".join(out.split()) if result.returncode else out


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", "Python", OK if ok else MISSING, f"{platform.python_version()} ({sys.executable})")


def check_medtl() -> Check:
    import medtl

    return Check("medtl", "medtl", OK, f"{medtl.__version__} ({Path(medtl.__file__).parent})")


def check_torch() -> list[Check]:
    try:
        import torch
    except Exception as exc:  # a broken install must be reported, whatever it raises
        return [Check("torch", "PyTorch", MISSING, f"cannot import torch ({exc})", "every command")]
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    checks = [Check("torch", "PyTorch", OK, f"{torch.__version__} ({build})", "every command")]
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
        detail = "; ".join(f"{i}: {g.name} {g.total_memory / 2**30:.0f} GiB" for i, g in enumerate(gpus))
        checks.append(Check("gpu", "CUDA GPUs", OK, detail, NEEDED_BY["gpu"]))
    else:
        checks.append(
            Check(
                "gpu",
                "CUDA GPUs",
                MISSING,
                "no CUDA device visible (training runs on the CPU)",
                NEEDED_BY["gpu"],
            )
        )
    return checks


def check_nvml() -> Check:
    try:
        import pynvml

        pynvml.nvmlInit()
        driver = pynvml.nvmlSystemGetDriverVersion()
        count = pynvml.nvmlDeviceGetCount()
    except Exception as exc:  # no library, no driver: say which
        return Check("nvml", "NVML", MISSING, f"unavailable ({type(exc).__name__}: {exc})", NEEDED_BY["nvml"])
    driver = driver.decode() if isinstance(driver, bytes) else driver
    return Check("nvml", "NVML", OK, f"driver {driver}, {count} device(s)", NEEDED_BY["nvml"])


def check_rapl(root: Path = Path("/sys/class/powercap")) -> Check:
    zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    readable = [z for z in zones if os.access(z / "energy_uj", os.R_OK)]
    if readable:
        return Check("rapl", "RAPL", OK, f"{len(readable)} package domain(s) readable", NEEDED_BY["rapl"])
    why = "not readable (needs root or a readable energy_uj)" if zones else f"no RAPL domains under {root}"
    return Check("rapl", "RAPL", MISSING, f"{why}; energy is estimated from CPU time", NEEDED_BY["rapl"])


def check_slurm() -> Check:
    commands = ("sbatch", "srun", "squeue", "sacct", "scontrol", "scancel")
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        return Check(
            "slurm", "SLURM", MISSING, f"commands not found: {', '.join(missing)}", NEEDED_BY["slurm"]
        )
    rc, out = _run(["scontrol", "show", "config"])
    if rc != 0:
        return Check(
            "slurm",
            "SLURM",
            MISSING,
            f"commands found, no controller answers ({out[:100]})",
            NEEDED_BY["slurm"],
        )
    conf = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    conf = {k.strip(): v.strip() for k, v in conf.items()}
    _, partitions = _run(["sinfo", "-h", "-o", "%P"])
    _, version = _run(["sbatch", "--version"])
    accounting = conf.get("AccountingStorageType", "?").split("/")[-1]
    detail = (
        f"{version}, cluster '{conf.get('ClusterName', '?')}', "
        f"partitions {', '.join(partitions.split()) or '-'}, accounting {accounting}"
    )
    return Check("slurm", "SLURM", OK, detail, NEEDED_BY["slurm"])


def check_runtime(key: str, command: list[str], probe: list[str] | None = None) -> Check:
    name = {"charliecloud": "charliecloud (ch-run)"}.get(key, key.capitalize())
    if shutil.which(command[0]) is None:
        return Check(key, name, MISSING, f"{command[0]} not found", NEEDED_BY[key])
    rc, out = _run(command)
    version = out.splitlines()[0] if out else "?"
    if rc != 0:
        return Check(key, name, MISSING, f"{command[0]} fails: {version[:120]}", NEEDED_BY[key])
    if probe is not None:
        rc, out = _run(probe)
        if rc != 0:
            return Check(key, name, MISSING, f"{version}; daemon not reachable ({out[:100]})", NEEDED_BY[key])
    return Check(key, name, OK, version, NEEDED_BY[key])


def _writable(folder: Path) -> str | None:
    """None when ``folder`` (created if needed) takes a file, else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".medtl-doctor-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def check_folders() -> list[Check]:
    from medtl.models.checkpoints import default_weights_dir

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "medtl"
    problem = _writable(cache)
    checks = [
        Check(
            "cache",
            "cache folder",
            MISSING if problem else OK,
            f"{cache}" + (f": {problem}" if problem else " (writable)"),
            "features, compiled kernels",
        )
    ]
    weights = default_weights_dir()
    if weights.is_dir():
        problem = _writable(weights)
        state = f"{weights}" + (f": not writable ({problem})" if problem else " (writable)")
        checks.append(Check("weights_dir", "weights folder", OK, state, NEEDED_BY["weights"]))
    else:
        checks.append(
            Check("weights_dir", "weights folder", MISSING, f"{weights} does not exist", NEEDED_BY["weights"])
        )
    return checks


def check_weights(names: Iterable[str] = WEIGHTS_OF) -> Check:
    """Which ImageNet weight files are on disk (nothing is downloaded)."""
    import torch

    from medtl.errors import MedtlError
    from medtl.models import create_backbone
    from medtl.models.checkpoints import find_imagenet_weights

    present, absent = [], []
    for name in names:
        try:
            with torch.device("meta"):  # the architecture names its weight file; no memory needed
                backbone = create_backbone(name)
            find_imagenet_weights(backbone)
            present.append(name)
        except MedtlError:
            absent.append(name)
        except Exception as exc:  # a backbone this timm/torchvision lacks: report, do not fail doctor
            absent.append(f"{name} ({type(exc).__name__})")
    detail = f"present: {', '.join(present) or 'none'}; absent: {', '.join(absent) or 'none'}"
    return Check("weights", "ImageNet weights", OK if present else MISSING, detail, NEEDED_BY["weights"])


CHECKS: tuple[Callable[[], Check | list[Check]], ...] = (
    check_python,
    check_medtl,
    check_torch,
    check_nvml,
    check_rapl,
    check_slurm,
    lambda: check_runtime("apptainer", ["apptainer", "--version"]),
    lambda: check_runtime(
        "docker", ["docker", "--version"], ["docker", "info", "--format", "{{.ServerVersion}}"]
    ),
    lambda: check_runtime("podman", ["podman", "--version"]),
    lambda: check_runtime("charliecloud", ["ch-run", "--version"]),
    check_folders,
    check_weights,
)
REQUIRABLE = ("gpu", "nvml", "rapl", "slurm", "apptainer", "docker", "podman", "charliecloud", "weights")


def diagnose(require: Iterable[str] = ()) -> list[Check]:
    """Every check, with ``required`` set for torch, the cache folder and the ``require``d parts."""
    from medtl.errors import UnknownChoiceError

    wanted = set(require)
    unknown = sorted(wanted - set(REQUIRABLE))
    if unknown:
        raise UnknownChoiceError("doctor requirement", unknown[0], REQUIRABLE)
    checks: list[Check] = []
    for check in CHECKS:
        result = check()
        checks.extend(result if isinstance(result, list) else [result])
    for check in checks:
        check.required = check.key in ALWAYS_REQUIRED | wanted
    return checks
