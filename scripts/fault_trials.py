"""Fault-injection trials behind docs/reliability.md: run them, print what survived.

    .venv/bin/python scripts/fault_trials.py [--trials 20] [--kills 10] [--corruptions 60] [--seed 0]

Every trial drives the real CLI (``medtl ...`` in subprocesses where processes matter, in-process
through Typer's runner where they do not) on phantom data written into a temporary directory:

* concurrent writers: ``--trials`` rounds of three ``prepare folder ... --overwrite`` started at
  once on one output; each must exit 0 or with the one-line "in use" error, and the published store
  must pass a full ``verify``;
* kills: ``--kills`` ``prepare brats`` runs killed with SIGKILL at a random moment, then rerun; the
  result must equal an uninterrupted conversion byte for byte;
* runs: ``--runs`` ``finetune`` runs, each with a second ``finetune`` started on the same run while
  it trains (refused), then stopped with SIGTERM at a random moment (status "interrupted") and run
  again; its test metrics must equal an uninterrupted run's;
* corruptions: ``--corruptions`` random damages of a store (bytes overwritten, truncation, deletion,
  a label or a patient id changed); ``data check`` must exit 2 with one line naming the damaged file;
* disk full / read-only (root with tmpfs only): a conversion onto a file system too small, then
  resumed after it is enlarged; outputs on a read-only file system;
* malformed inputs and malicious checkpoints: each must be a skip entry or one line with exit 2,
  never a traceback;
* inputs kept: every converter with its output at, above, inside or linked to its input and
  ``--overwrite``; the raw files must be unchanged.

The counts are printed as a table; "failed" must be 0 everywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

MEDTL = [sys.executable, "-c", "from medtl_cli.main import main; main()"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
RESULTS: dict[str, Counter] = {}


def count(trial: str, outcome: str) -> None:
    RESULTS.setdefault(trial, Counter())[outcome] += 1


def cli(*args) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from medtl_cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def one_line_error(code: int, stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def class_folders(root: Path, per_class: int = 40, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name in ("benign", "malignant"):
        for i in range(per_class):
            path = root / name / f"{name}_{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)
    return root


def brats_raw(work: Path) -> Path:
    """24 phantom BraTS subjects (written on first use)."""
    raw = work / "brats-raw"
    if not raw.exists():
        args = ["--subjects", "24", "--shape", "64", "64", "32", "--seed", "0"]
        assert cli("prepare", "phantom", "brats", raw, *args)[0] == 0
    return raw


def folder_store(work: Path) -> Path:
    """A small class-folder store (written on first use)."""
    store = work / "corrupt-base"
    if not store.exists():
        raw = class_folders(work / "corrupt-raw", per_class=30, size=48, seed=1)
        assert cli("prepare", "folder", raw, store)[0] == 0
    return store


# -- concurrent writers --------------------------------------------------------------------------
def concurrent_writers(work: Path, trials: int) -> None:
    from medtl.io.store import Store

    raw = class_folders(work / "folder-raw")
    for trial in range(trials):
        out = work / f"concurrent-{trial}"
        procs = [
            subprocess.Popen(
                [*MEDTL, "prepare", "folder", str(raw), str(out), "--overwrite"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=ENV,
            )
            for _ in range(3)
        ]
        for proc in procs:
            _, stderr = proc.communicate()
            if proc.returncode == 0:
                count("concurrent prepares (3 per round)", "exit 0")
            elif one_line_error(proc.returncode, stderr) and "in use by pid" in stderr:
                count("concurrent prepares (3 per round)", "refused: in use (one line)")
            else:
                count("concurrent prepares (3 per round)", "failed")
        try:
            store = Store(out)
            ok = not store.verify() and len(store) == 80  # medtl < 0.2 returned the mismatching files
        except Exception:
            ok = False
        count("published stores after a round", "verified" if ok else "failed")


# -- kills -----------------------------------------------------------------------------------------
def kills(work: Path, n: int, rng: random.Random) -> None:
    """Kill each run at a random moment while it converts (after its progress log appeared)."""
    from medtl.io.store import Store

    raw = brats_raw(work)
    start = time.monotonic()
    assert cli("prepare", "brats", raw, work / "brats-ref", "--slices", "all")[0] == 0
    converting = time.monotonic() - start
    reference = Store(work / "brats-ref")
    for trial in range(n):
        out = work / f"killed-{trial}"
        proc = subprocess.Popen(
            [*MEDTL, "prepare", "brats", str(raw), str(out), "--slices", "all"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )
        log = work / f".killed-{trial}.partial" / "progress.jsonl"
        while proc.poll() is None and not log.exists():
            time.sleep(0.02)
        time.sleep(rng.uniform(0, converting))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            done = log.read_text().count("\n") - 1 if log.exists() else 0
            count("prepare killed with SIGKILL", "killed mid-run")
            count("subjects committed when killed", f"{done} of 24")
        else:
            count("prepare killed with SIGKILL", "finished before the kill")
        code, _, _ = cli("prepare", "brats", raw, out, "--slices", "all", "--overwrite")
        try:
            store = Store(out)
            same = code == 0 and store.checksum == reference.checksum
            np.testing.assert_array_equal(store.images, reference.images)
        except Exception:
            same = False
        count("rerun after the kill", "identical to an uninterrupted run" if same else "failed")


# -- runs: a second finetune, SIGTERM ------------------------------------------------------------------
def _signal_store(work: Path) -> Path:
    """Two classes told apart by a bright corner, one sample per patient (written on first use)."""
    from medtl.io.store import SampleRecord, StoreWriter

    out = work / "signal-store"
    if out.exists():
        return out
    rng = np.random.default_rng(0)
    with StoreWriter(
        out, task="classification", image_shape=(1, 16, 16), class_names=["a", "b"], label_shape=()
    ) as writer:
        for i in range(40):
            image = rng.normal(0.3, 0.1, (1, 1, 16, 16)).astype(np.float32)
            image[0, 0, (i % 2) * 8 : (i % 2) * 8 + 6, :6] += 0.6
            writer.add(f"s{i}", image, [SampleRecord(f"P{i}", f"{i}.png")], labels=np.array([i % 2]))
        writer.finish()
    return out


def runs(work: Path, n: int, rng: random.Random) -> None:
    """Per trial: a finetune, a second one on the same run directory while it trains, SIGTERM at a
    random moment, then the same command again; the result must equal an uninterrupted run's."""
    store = _signal_store(work)
    quick = ["--backbone", "resnet10t", "--init", "random", "--strategy", "full", "--epochs", "all=30",
             "--lr", "0.001", "--normalise", "none", "--device", "cpu", "--workers", "0", "--batch-size", "8",
             "--bootstrap", "0", "--deterministic"]  # fmt: skip
    assert cli("finetune", "--data", store, *quick, "--out", work / "runs", "--run-name", "ref")[0] == 0
    reference = json.loads((work / "runs" / "ref" / "metrics.json").read_text())
    for trial in range(n):
        args = [
            "finetune",
            "--data",
            str(store),
            *quick,
            "--out",
            str(work / "runs"),
            "--run-name",
            f"t{trial}",
        ]
        proc = subprocess.Popen(
            [*MEDTL, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True
        )
        status = work / "runs" / f"t{trial}" / "status.json"
        while proc.poll() is None and not (status.exists() and "running" in status.read_text()):
            time.sleep(0.05)
        code, _, stderr = cli(*args)
        busy = one_line_error(code, stderr) and "run is in use by pid" in stderr
        count("a second finetune on a live run", "refused at once (one line)" if busy else "failed")
        time.sleep(rng.uniform(0, 6))
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate()
            interrupted = proc.returncode == 130 and json.loads(status.read_text())["status"] == "interrupted"
            count(
                "finetune stopped with SIGTERM", "status interrupted, exit 130" if interrupted else "failed"
            )
        else:
            count("finetune stopped with SIGTERM", "finished before the signal")
        code, _, _ = cli(*args)
        metrics = json.loads((status.parent / "metrics.json").read_text()) if code == 0 else {}
        same = code == 0 and metrics.get("test") == reference["test"]
        count("rerun after SIGTERM", "same test metrics as an uninterrupted run" if same else "failed")


# -- corruptions -------------------------------------------------------------------------------------
def corruptions(work: Path, n: int, rng: random.Random) -> None:
    base = folder_store(work)
    kinds = ("overwrite bytes", "truncate", "delete", "swap a label", "rename a patient")
    for trial in range(n):
        store = work / f"corrupt-{trial}"
        subprocess.run(["cp", "-r", str(base), str(store)], check=True)
        kind = kinds[trial % len(kinds)]
        target = _corrupt(store, kind, rng)
        code, _, stderr = cli("data", "check", store)
        named = one_line_error(code, stderr) and str(store / target) in stderr
        count(f"store corruptions: {kind}", "data check: one line naming the file" if named else "failed")


def _corrupt(store: Path, kind: str, rng: random.Random) -> str:
    if kind == "swap a label":
        labels = np.load(store / "labels.npy")
        i = rng.randrange(len(labels))
        with open(store / "labels.npy", "r+b") as fh:
            fh.seek(-labels.nbytes + 8 * i, 2)
            fh.write(np.int64(1 - labels[i]).tobytes())
        return "labels.npy"
    if kind == "rename a patient":
        text = (store / "samples.csv").read_bytes()
        (store / "samples.csv").write_bytes(text.replace(b"benign_000", b"benign_001", 1))
        return "samples.csv"
    name = rng.choice(["images.npy", "labels.npy", "samples.csv"])
    path = store / name
    size = path.stat().st_size
    if kind == "overwrite bytes":
        with open(path, "r+b") as fh:
            offset = rng.randrange(0, max(1, size - 64))
            old = fh.read()[offset : offset + 64]
            fh.seek(offset)
            fh.write(bytes(b ^ 0xFF for b in old) or b"x")
    elif kind == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(rng.randrange(0, size))
    else:
        path.unlink()
    return name


# -- disk full and read-only (root, tmpfs) -------------------------------------------------------------
def _mount(path: Path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def disk_full_and_read_only(work: Path) -> None:
    from medtl.io.store import Store

    if os.geteuid() != 0 or not _mount(work / "probe-mount", "size=64k"):
        count("disk full / read-only", "skipped (needs root and tmpfs)")
        return
    subprocess.run(["umount", str(work / "probe-mount")], check=False)
    raw = brats_raw(work)
    reference = work / "brats-ref96"
    assert cli("prepare", "brats", raw, reference, "--slices", "all", "--size", "96")[0] == 0
    need = sum(p.stat().st_size for p in reference.iterdir())
    for share in (0.05, 0.3, 0.6, 0.9):  # of the space the store needs
        disk = work / f"disk-{share}"
        _mount(disk, f"size={max(64 * 1024, int(share * need))}")
        try:
            code, _, stderr = cli("prepare", "brats", raw, disk / "s", "--slices", "all", "--size", "96")
            if not (one_line_error(code, stderr) and "no space left on the device" in stderr):
                count("prepare onto a full disk", "failed")
                continue
            count("prepare onto a full disk", "one line, exit 2")
            subprocess.run(["mount", "-o", f"remount,size={4 * need}", str(disk)], check=True)
            code, _, _ = cli("prepare", "brats", raw, disk / "s", "--slices", "all", "--size", "96")
            same = code == 0 and Store(disk / "s").checksum == Store(reference).checksum
            count("rerun after freeing space", "identical to an uninterrupted run" if same else "failed")
        finally:
            subprocess.run(["umount", "--lazy", str(disk)], check=False)
    ro = work / "read-only"
    _mount(ro, "ro,size=64k")
    try:
        store = folder_store(work)
        commands = [
            ("prepare", "brats", raw, ro / "s"),
            ("prepare", "folder", work / "corrupt-raw", ro / "s"),
            ("prepare", "phantom", "brats", ro / "p", "--subjects", "1", "--shape", "8", "8", "4"),
            ("data", "split", store, "--folds", "3", "--out", ro / "x.split.json"),
        ]
        for args in commands:
            code, _, stderr = cli(*args)
            ok = one_line_error(code, stderr) and "cannot be written" in stderr
            count("outputs on a read-only file system", "one line, exit 2" if ok else "failed")
    finally:
        subprocess.run(["umount", "--lazy", str(ro)], check=False)


# -- malformed inputs ---------------------------------------------------------------------------------
def malformed_inputs(work: Path) -> None:
    root = work / "malformed"
    cases: dict[str, Callable[[Path], None]] = {
        "empty .png": lambda p: p.write_bytes(b""),
        "random bytes .png": lambda p: p.write_bytes(os.urandom(4096)),
        "truncated .png": lambda p: p.write_bytes(_png_bytes()[:60]),
        "text renamed .png": lambda p: p.write_text("hello"),
        "text renamed .dcm": lambda p: p.with_suffix(".dcm").write_text("hello"),
        "broken symlink": lambda p: os.symlink(root / "nowhere.png", p),
        "directory named .png": lambda p: p.mkdir(),
    }
    for name, make in cases.items():
        raw = class_folders(root / name.replace(" ", "_"), per_class=3, size=16)
        make(raw / "benign" / "bad.png")
        for strict in ((), ("--strict",)):
            code, _, stderr = cli("prepare", "folder", raw, raw.parent / f"{raw.name}{len(strict)}", *strict)
            ok = code == 0 if not strict and name != "directory named .png" else code in (0, 2)
            ok = ok and "Traceback" not in stderr and (code == 0 or one_line_error(code, stderr))
            count(
                f"malformed image{' (--strict)' if strict else ''}", "skipped or one line" if ok else "failed"
            )
    mats = {
        "text renamed .mat": b"not matlab\n",
        "empty .mat": b"",
        "random bytes .mat": os.urandom(2048),
        "HDF5 signature, then garbage": b"\x89HDF\r\n\x1a\n" + os.urandom(1024),
    }
    for name, data in mats.items():
        raw = root / name.replace(" ", "_").replace(",", "")
        raw.mkdir(parents=True)
        (raw / "1.mat").write_bytes(data)
        for flags in ((), ("--strict",), ("--size", "8"), ("--size", "8", "--strict")):
            code, _, stderr = cli("prepare", "ce-mri", raw, root / f"{raw.name}-out", *flags)
            leftover = (root / f".{raw.name}-out.partial").exists()
            ok = one_line_error(code, stderr) and not leftover
            count("malformed .mat (4 flag sets)", "one line, nothing left" if ok else "failed")
    for name, text in {
        "non-UTF-8 label list": b"name,label\n\xff\xfe,a\n",
        "label list without labels": b"name\nx.png\n",
        "empty label list": b"",
    }.items():
        raw = class_folders(root / name.replace(" ", "_"), per_class=2, size=16)
        (raw / "labels.csv").write_bytes(text)
        code, _, stderr = cli(
            "prepare", "list", raw / "labels.csv", root / f"{raw.name}-out", "--images", raw
        )
        count("malformed label lists", "one line, exit 2" if one_line_error(code, stderr) else "failed")


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- malicious and damaged checkpoints -----------------------------------------------------------------
class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/medtl-pwned",))


def malicious_checkpoints(work: Path) -> None:
    import torch

    root = work / "checkpoints"
    root.mkdir()
    good = {k: v for k, v in _resnet18().items() if not k.startswith("fc.")}
    torch.save(good, root / "good.pth")
    data = (root / "good.pth").read_bytes()
    files = {
        "pickle running os.system": lambda p: p.write_bytes(pickle.dumps({"state_dict": _Payload()})),
        "torch.save of an object": lambda p: torch.save({"state_dict": good, "x": Path("/etc")}, p),
        "truncated zip": lambda p: p.write_bytes(data[: len(data) // 2]),
        "random bytes": lambda p: p.write_bytes(os.urandom(10000)),
        "empty file": lambda p: p.write_bytes(b""),
        "zip of other files": lambda p: zipfile.ZipFile(p, "w").writestr("a.txt", "hi"),
        "safetensors with a bad header": lambda p: p.with_suffix(".safetensors").write_bytes(b"\xff" * 64),
        "a list, not a dict": lambda p: torch.save([torch.zeros(3)], p),
        "two equal encoders": lambda p: torch.save(
            {**{f"a.{k}": v for k, v in good.items()}, **{f"b.{k}": v for k, v in good.items()}}, p
        ),
    }
    for name, make in files.items():
        path = root / (name.replace(" ", "_").replace(",", "") + ".pth")
        make(path)
        if not path.exists():
            path = path.with_suffix(".safetensors")
        code, _, stderr = cli(
            "extract",
            "resnet18",
            "--data",
            folder_store(work),
            "--init",
            path,
            "--out",
            root / f"{path.stem}-features",
            "--device",
            "cpu",
            "--image-size",
            "32",
        )
        ok = one_line_error(code, stderr) and not Path("/tmp/medtl-pwned").exists()
        count("malicious or damaged checkpoints", "refused in one line" if ok else "failed")


def _resnet18() -> dict:
    import torchvision

    return torchvision.models.resnet18(weights=None).state_dict()


# -- inputs kept ---------------------------------------------------------------------------------------
def inputs_kept(work: Path) -> None:
    raw = class_folders(work / "kept-raw", per_class=3, size=16)
    brats = brats_raw(work)
    for source, command, folder in (
        ("folder", ["prepare", "folder", raw], raw),
        ("brats", ["prepare", "brats", brats], brats),
    ):
        before = snapshot(folder)
        link = work / f"link-{source}"
        link.symlink_to(folder, target_is_directory=True)
        for out in (folder, folder.parent, folder / "store", link, folder / "benign"):
            code, _, stderr = cli(*command, out, "--overwrite")
            kept = one_line_error(code, stderr) and snapshot(folder) == before
            count(
                "outputs at, above, inside or linked to an input",
                "refused, input intact" if kept else "failed",
            )


GROUPS = ("concurrent", "kills", "runs", "corruptions", "disk", "malformed", "checkpoints", "inputs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="rounds of three concurrent prepares")
    parser.add_argument("--kills", type=int, default=10, help="prepares killed at a random moment")
    parser.add_argument("--corruptions", type=int, default=60, help="random store damages")
    parser.add_argument("--runs", type=int, default=5, help="finetunes stopped with SIGTERM")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", help="comma-separated groups: " + ", ".join(GROUPS))
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(GROUPS)
    rng = random.Random(args.seed)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="medtl-faults-") as tmp:
        work = Path(tmp)
        steps = {
            "concurrent": lambda: concurrent_writers(work, args.trials),
            "kills": lambda: kills(work, args.kills, rng),
            "runs": lambda: runs(work, args.runs, rng),
            "corruptions": lambda: corruptions(work, args.corruptions, rng),
            "disk": lambda: disk_full_and_read_only(work),
            "malformed": lambda: malformed_inputs(work),
            "checkpoints": lambda: malicious_checkpoints(work),
            "inputs": lambda: inputs_kept(work),
        }
        for name in chosen:
            steps[name]()
    print(f"fault trials ({time.monotonic() - start:.0f} s, seed {args.seed})")
    width = max(len(t) for t in RESULTS)
    for trial, outcomes in RESULTS.items():
        for outcome, n in sorted(outcomes.items()):
            print(f"  {trial:<{width}}  {n:4d}  {outcome}")
    failed = sum(o["failed"] for o in RESULTS.values())
    print(f"failed: {failed}")
    print(json.dumps({t: dict(o) for t, o in RESULTS.items()}), file=sys.stderr)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
