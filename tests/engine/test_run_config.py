"""RunConfig: stable run id over result-deciding fields and file contents, the objective section,
TOML round trip, one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from medtl.engine.run_config import RunConfig
from medtl.errors import ConfigError, InputError, UnknownChoiceError
from medtl.io.store import SampleRecord, Store, StoreWriter


def base(**fields) -> RunConfig:
    return RunConfig(**{"data": Path("stores/brats"), "backbone": "resnet18", **fields})


def test_run_id_is_stable_and_short():
    assert base().run_id() == base().run_id()
    assert len(base().run_id()) == 12
    # A pinned value: the id must not drift between medtl sessions or machines.
    assert base().run_id() == RunConfig.parse(base().model_dump(mode="json")).run_id()


@pytest.mark.parametrize(
    ("field", "value", "changes"),
    [
        ("seed", 1, True),
        ("strategy", "full", True),
        ("phase_epochs", {"head": 3}, True),
        ("amp", "bf16", True),
        ("num_workers", 7, False),
        ("out", Path("elsewhere"), False),
        ("run_name", "mine", False),
        ("weights_dir", Path("/w"), False),
    ],
)
def test_run_id_depends_only_on_result_fields(field, value, changes):
    assert (base().run_id() != base(**{field: value}).run_id()) is changes


def test_run_dir_defaults_to_run_id_under_out():
    config = base(out=Path("runs"))
    assert config.run_dir == Path.cwd() / "runs" / config.run_id()
    assert base(run_name="exp1").run_dir == Path.cwd() / "runs/exp1"


def test_paths_are_absolute_so_the_run_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "project" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    here = base(split=Path("stores/brats.split.json"), init="ckpt/moco.pth", strategy="my.toml")
    monkeypatch.chdir(tmp_path / "project" / "sub")
    there = base(
        data=Path("../stores/brats"),
        split=Path("../stores/brats.split.json"),
        init="../ckpt/moco.pth",
        strategy="../my.toml",
        out=Path("../runs"),
    )
    assert here.run_id() == there.run_id()
    assert here.run_dir == there.run_dir == tmp_path / "project" / "runs" / here.run_id()
    assert here.data == tmp_path / "project" / "stores" / "brats"
    assert here.init == str(tmp_path / "project" / "ckpt" / "moco.pth")
    assert base(init="imagenet").init == "imagenet"  # names stay names
    assert base(strategy="DA_L1SB").strategy == "DA_L1SB"


def test_toml_round_trip(tmp_path):
    config = base(
        split=Path("s.json"),
        phase_epochs={"head": 3, "blocks": 2},
        augment=["hflip", "rotate"],
        objective={"class_weights": [1.0, 2.0]},
        patience=4,
        lr=3e-4,
    )
    config.save(tmp_path / "config.toml")
    loaded = RunConfig.load(tmp_path)
    assert loaded == config
    assert loaded.run_id() == config.run_id()
    assert 'backbone = "resnet18"' in (tmp_path / "config.toml").read_text()


def test_differing_keys_lists_result_fields_only():
    assert base(seed=2, lr=0.1, num_workers=9).differing_keys(base()) == ["lr", "seed"]


def test_unknown_field_is_one_line_config_error():
    with pytest.raises(ConfigError, match=r"run config: epochz: Extra inputs are not permitted"):
        RunConfig.parse({"data": "x", "epochz": 3})


def test_bad_value_names_file_and_field(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('data = "x"\namp = "fp8"\n')
    with pytest.raises(ConfigError, match=r"config.toml: amp: Input should be 'none', 'bf16' or 'fp16'"):
        RunConfig.load(path)


def test_malformed_toml_names_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("data = \n")
    with pytest.raises(InputError, match=r"config.toml: not valid TOML"):
        RunConfig.load(path)


# -- the objective section ------------------------------------------------------------------------
def test_objective_section_defaults_to_the_store_s_objective(signal_stores):
    config = RunConfig(data=signal_stores["multilabel"])
    assert config.objective.kind == "classification" and config.objective.monitor == "auroc"
    given = RunConfig(data=signal_stores["multiclass"], objective={"task": "binary"})
    assert given.objective.kind == "classification" and given.objective.task == "binary"


def test_objective_unknown_key_lists_the_valid_keys():
    with pytest.raises(
        ConfigError,
        match=r"run config: objective.epochz: Extra inputs are not permitted; valid keys: kind, .*task, "
        r"class_weights, label_smoothing",
    ):
        RunConfig.parse({"data": "x", "objective": {"kind": "classification", "epochz": 3}})


def test_objective_unknown_kind_and_monitor():
    with pytest.raises(ConfigError, match=r"objective.kind: unknown objective 'clasification', did you mean"):
        RunConfig.parse({"data": "x", "objective": {"kind": "clasification"}})
    with pytest.raises(UnknownChoiceError, match="unknown monitor metric 'aucroc', did you mean 'auroc'"):
        RunConfig.parse({"data": "x", "objective": {"monitor": "aucroc"}})


def test_objective_round_trips_through_toml(tmp_path):
    config = base(objective={"task": "multilabel", "label_smoothing": 0.1, "monitor": "loss"})
    config.save(tmp_path / "config.toml")
    assert "[objective]" in (tmp_path / "config.toml").read_text()
    assert RunConfig.load(tmp_path) == config


# -- the run id holds the content of the files, not their location --------------------------------
def _store(path, labels):
    rng = np.random.default_rng(0)
    with StoreWriter(
        path, task="classification", image_shape=(1, 8, 8), class_names=["a", "b"], label_shape=()
    ) as w:
        for i, label in enumerate(labels):
            image = rng.normal(size=(1, 1, 8, 8)).astype(np.float32)
            w.add(f"s{i}", image, [SampleRecord(f"P{i}", f"{i}.png")], labels=np.array([label]))
        return w.finish()


def test_run_id_is_the_store_s_content_not_its_location(tmp_path):
    first = _store(tmp_path / "here" / "store", [0, 1, 0, 1])
    copy = shutil.copytree(first, tmp_path / "elsewhere" / "renamed")
    relabelled = _store(tmp_path / "third" / "store", [0, 1, 1, 1])
    ids = [RunConfig(data=path, backbone="resnet18").run_id() for path in (first, copy, relabelled)]
    assert ids[0] == ids[1] != ids[2]
    assert RunConfig(data=copy).data == copy  # config.toml keeps where the store is


def test_run_id_holds_split_and_strategy_files_by_content(tmp_path):
    store = _store(tmp_path / "store", [0, 1, 0, 1])
    strategy = tmp_path / "a" / "mine.toml"
    strategy.parent.mkdir()
    strategy.write_text('[[phases]]\nname = "head"\ntrainable = ["head"]\nepochs = 1\nlr = 1e-3\n')
    moved = shutil.copy(strategy, tmp_path / "moved.toml")
    assert (
        RunConfig(data=store, strategy=str(strategy)).run_id()
        == RunConfig(data=store, strategy=str(moved)).run_id()
    )
    before = RunConfig(data=store, strategy=str(strategy)).run_id()
    strategy.write_text(strategy.read_text().replace("epochs = 1", "epochs = 2"))
    assert RunConfig(data=store, strategy=str(strategy)).run_id() != before
    split = tmp_path / "s.json"
    split.write_text("{}")
    other = shutil.copy(split, tmp_path / "t.json")
    assert RunConfig(data=store, split=split).run_id() == RunConfig(data=store, split=other).run_id()


def test_config_of_an_earlier_medtl_moves_its_classification_settings_into_the_section(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('data = "x"\ntask = "binary"\nmonitor = "loss"\nlabel_smoothing = 0.1\n')
    objective = RunConfig.load(path).objective
    assert (objective.kind, objective.task, objective.monitor, objective.label_smoothing) == (
        "classification",
        "binary",
        "loss",
        0.1,
    )
    # user input keeps one spelling: the section
    with pytest.raises(ConfigError, match="run config: task: Extra inputs are not permitted"):
        RunConfig.parse({"data": "x", "task": "binary"})


def _embeddings(path, store, seed=0):
    from medtl.io.embeddings import EmbeddingSplit, save_embeddings

    rng = np.random.default_rng(seed)
    part = EmbeddingSplit(
        rng.normal(size=(4, 6)).astype(np.float32),
        rng.normal(size=(4, 3)).astype(np.float32),
        np.arange(4),
        np.array(["P0", "P1", "P2", "P3"]),
    )
    checksum = Store(store).checksum
    return save_embeddings(
        path, {"train": part}, store=store, store_checksum=checksum, vision={"backbone": "x"}, text={}
    )


def _run_dir(path, weights: bytes):
    (path / "export").mkdir(parents=True)
    (path / "config.toml").write_text('data = "x"\n')
    (path / "status.json").write_text('{"status": "completed"}')
    (path / "export" / "backbone.safetensors").write_bytes(weights)
    return path


def test_every_path_valued_field_is_held_by_content_wherever_it_lies(tmp_path):
    """SimCLR's extra stores, the Adaptor's embeddings and --init RUN_DIR: two copies in different
    directories give one run id; other content gives another."""
    store = _store(tmp_path / "store", [0, 1, 0, 1])
    extra = _store(tmp_path / "a" / "extra", [1, 1, 0, 0])
    extra_copy = shutil.copytree(extra, tmp_path / "b" / "moved")
    other = _store(tmp_path / "c" / "extra", [1, 1, 1, 0])

    def simclr(path):
        return RunConfig(data=store, objective={"kind": "simclr", "stores": {str(path): 0.5}}).run_id()

    assert simclr(extra) == simclr(extra_copy) != simclr(other)

    emb = _embeddings(tmp_path / "emb", store)
    emb_copy = shutil.copytree(emb, tmp_path / "elsewhere" / "emb2")
    emb_other = _embeddings(tmp_path / "emb3", store, seed=1)

    def adaptor(path):
        return RunConfig(data=store, objective={"kind": "adaptor", "embeddings": path}).run_id()

    assert adaptor(emb) == adaptor(emb_copy) != adaptor(emb_other)

    run = _run_dir(tmp_path / "runs" / "r1", b"weights-1")
    run_copy = shutil.copytree(run, tmp_path / "archive" / "r1-copy")
    retrained = _run_dir(tmp_path / "runs" / "r2", b"weights-2")
    ids = [RunConfig(data=store, init=str(p)).run_id() for p in (run, run_copy, retrained)]
    assert ids[0] == ids[1] != ids[2]
    assert RunConfig(data=store, init=str(run_copy)).init == str(run_copy)  # config.toml keeps the path
