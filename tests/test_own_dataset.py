"""Your own dataset (README, "Your own dataset"): the example config end to end through Snakemake,
and what makes that path safe: images read at the backbone's input size (a forced mismatch is a
config error), templates required for folder data as the schema says, each named configuration's
tables in their own folder (and a guard against writing over another's), a user's own catalog
target outside the papers' folders, the alpha a validation tie picks, and alpha labels on the
WiSE-FT figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from robustft.config import ConfigError, check_config
from robustft.configfile import read_merged
from robustft.plan import Plan
from tests.test_workflow import ROOT, SCHEMA, job_counts, snakemake

EXAMPLE = ROOT / "config" / "examples" / "own-dataset.yaml"
DEFAULT = ROOT / "config" / "config.yaml"
CLIP = {"family": "clip", "arch": {"library": "open_clip", "name": "robustft-mini-cnn"}}


def example_config(**changes) -> dict:
    """config.yaml with the example laid over it (as `--configfile` merges them), plus `changes`
    to the example's dataset."""
    config = read_merged([DEFAULT, EXAMPLE])
    config["datasets"]["shapes"].update(changes)
    return config


def problems(config: dict) -> str:
    try:
        check_config(config, SCHEMA, command_line={})
    except ConfigError as err:
        return str(err)
    return ""


# ---- the input resolution is the backbone's ------------------------------------------------------
def test_images_are_read_at_the_backbones_input_size(tmp_path):
    """A folder dataset without `image_size` is read at the backbone's size (the mini CLIP's 32 px,
    ViT-B/16's 224), through the same transforms the jobs build."""
    from robustft.data import load_split
    from robustft.preprocess import Preprocess
    from robustft.sources.example import write_example
    from robustft.sources.folders import prepare_folders

    data = write_example(tmp_path / "shapes")
    cfg = example_config()["datasets"]["shapes"]
    cfg["splits"] = {s: {"path": str(data / s)} for s in cfg["splits"]}
    info = prepare_folders("shapes", cfg, tmp_path / "ds", tmp_path / "dl")
    assert info.image_size is None  # none recorded: each backbone reads it at its own size
    pre = Preprocess.resolve(None, CLIP, info.image_size)
    images, labels = load_split(tmp_path / "ds", "sketch", pre).get_batch(range(0, 200, 50))
    assert images.shape == (4, 3, 32, 32)
    # sorted folders (circle, lightning_bolt, square, star), labelled in the order of `classes`
    assert labels.tolist() == [0, 3, 1, 2]
    vit = {"family": "clip", "arch": {"library": "open_clip", "name": "ViT-B-16-quickgelu"}}
    resnet = {"family": "ssl", "arch": {"library": "torchvision", "name": "resnet50"}}
    assert Preprocess.resolve(None, vit, None).image_size == 224
    assert Preprocess.resolve(None, resnet, None).image_size == 224  # torchvision's crop
    assert Preprocess.resolve(None, resnet, 96).image_size == 96  # any size: the dataset's


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"image_size": 224}, "dataset 'shapes' sets image_size 224 px, but backbone 'mini-clip' "
                              "takes 32 px"),
        ({"preprocess": "lpft_imagenet"}, "preprocessing preset 'lpft_imagenet', which makes 224 "
                                          "px images, but backbone 'mini-clip' takes 32 px"),
    ],
)  # fmt: skip
def test_a_forced_resolution_mismatch_stops_before_any_job(change, expected):
    message = problems(example_config(**change))
    assert expected in message and "experiments[0]" in message
    assert problems(example_config(image_size=32)) == ""  # the backbone's own size: fine


def test_a_generated_dataset_drawn_at_another_size_is_a_config_error():
    config = read_merged([DEFAULT])
    config["datasets"]["mini"]["generator"]["image_size"] = 48
    message = problems(config)
    assert "dataset 'mini' is generated at 48 px" in message and "set it to 32" in message


def test_folder_data_needs_templates_as_the_schema_says():
    config = example_config()
    del config["datasets"]["shapes"]["templates"]
    message = problems(config)
    assert "datasets['shapes']: a real dataset needs `templates`" in message
    assert "openai_imagenet" in message  # the shipped data files are named
    schema = yaml.safe_load(SCHEMA.read_text())
    described = schema["properties"]["datasets"]["additionalProperties"]["properties"]
    assert "required for real data" in described["templates"]["description"]


# ---- each configuration's tables in its own folder ---------------------------------------------
def test_a_named_config_writes_its_tables_under_its_name_and_the_default_keeps_its_paths():
    default = Plan(check_config(read_merged([DEFAULT]), SCHEMA, command_line={}))
    assert default.targets["methods_table"].files["csv"] == "results/tables/methods.csv"
    assert (
        default.targets["flyp_table1"].files["compare"] == "results/papers/flyp/table1.compare.csv"
    )
    assert default.targets["flyp_table1"].log == "logs/papers/flyp/table1.log"
    own = Plan(check_config(example_config(), SCHEMA, command_line={}))
    assert own.targets["methods_table"].files["csv"] == "results/own-dataset/tables/methods.csv"
    assert own.targets["wiseft_figure"].files["png"] == (
        "results/own-dataset/figures/wiseft_curve.png"
    )
    # a user's own target: its own folder, no published numbers to compare with
    assert own.targets["shapes_table"].files == {
        "csv": "results/own-dataset/mine/shapes.csv", "md": "results/own-dataset/mine/shapes.md",
    }  # fmt: skip
    assert own.targets["shapes_table"].log == "logs/own-dataset/mine/shapes.log"
    config = example_config()
    del config["catalog"][0]["paper"]  # `mine` is the default
    assert Plan(check_config(config, SCHEMA, command_line={})).targets["shapes_table"].files == (
        own.targets["shapes_table"].files
    )


def test_a_name_may_not_be_a_folder_every_results_holds():
    config = example_config()
    config["name"] = "models"
    assert "name: 'models' is a folder every config's results/ holds" in problems(config)


def test_a_results_folder_refuses_another_configs_tables(tmp_path):
    from robustft.namespace import OWNER_FILE, claim, config_identity

    root = str(tmp_path / "results")
    mine = config_identity([EXAMPLE], DEFAULT, ROOT)
    assert mine == ["config/config.yaml", "config/examples/own-dataset.yaml"]
    assert config_identity([DEFAULT], DEFAULT, ROOT) == config_identity([], DEFAULT, ROOT)
    claim(root, mine, [])  # writes no table: claims nothing
    assert not (tmp_path / "results" / OWNER_FILE).exists()
    claim(root, mine, [f"{root}/metrics.csv"])
    claim(root, mine, [f"{root}/metrics.csv"])  # the same config again: its own tables
    with pytest.raises(ConfigError, match="holds the tables of another configuration") as err:
        claim(root, ["config/config.yaml"], [f"{root}/metrics.csv"])
    assert "`name: <a name>`" in str(err.value) and OWNER_FILE in str(err.value)


# ---- WiSE-FT: which alpha a validation tie picks, and alpha on the figures ----------------------
def _metrics(val: dict[float, float]) -> pd.DataFrame:
    """A run's tidy metrics at each alpha: validation `val[alpha]`, ID and the shift rising."""
    rows = []
    for alpha, v in val.items():
        for split, role, value in (("val", "val", v), ("test", "id", 0.5 + alpha / 4),
                                   ("sketch", "ood", 0.4 + alpha / 8)):  # fmt: skip
            rows.append(dict(backbone="mini-clip", dataset="shapes", recipe="ft", method="ft",
                             seed=0, alpha=alpha, split=split, role=role, metric="top1",
                             value=value, n=100, headline=True, precision="fp32"))  # fmt: skip
    return pd.DataFrame(rows)


def test_a_validation_tie_picks_the_smallest_tied_alpha():
    """At a ceiling several alphas tie on validation: the smallest of them is chosen (the one
    closest to theta_0), in the general table and in a catalog table alike."""
    from robustft.catalog import TargetData
    from robustft.paper_tables import method_table
    from robustft.tables import methods_table

    metrics = _metrics({0.0: 0.6, 0.2: 0.9, 0.4: 1.0, 0.6: 1.0, 0.8: 1.0, 1.0: 1.0})
    assert methods_table(metrics, ["ft"]).wise_alpha.tolist() == [0.4]
    spec = {"rows": {"FT": "ft"}, "columns": ["id"], "ensemble": True}
    assert method_table(spec, TargetData(metrics=metrics)).wise_alpha.tolist() == [0.4]


def test_alpha_labels_share_a_place_where_points_pile_up():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robustft.plots import label_alphas

    alphas = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ceiling = (np.array([60, 90, 100, 100, 100, 100.0]), np.array([40, 55, 60, 60, 60, 60.0]))
    fig, ax = plt.subplots()
    written = label_alphas(ax, {"ft": (*ceiling, alphas), "l2sp": (*ceiling, alphas)},
                           (40.0, 20.0), {"ft": "C0", "l2sp": "C1"})  # fmt: skip
    # theta_0 (0) has its own star; 0.4 ... 1 lie on one point; l2sp's coincide with ft's
    assert written == ["0.2", "0.4–1"]
    assert [t.get_text() for t in ax.texts] == written
    plt.close(fig)


# ---- the example, end to end ----------------------------------------------------------------------
# A backbone that pretrains in seconds (its zero-shot head is near chance: the README's numbers
# are the default mini CLIP's), and fine-tuning sized to learn 4 classes from it.
FAST = """
datasets:
  shapes4:
    generator: {seed: 5, classes: [circle, square, star, lightning bolt],
      pool_mix: {photo: 0.5, sketch: 0.5}}
    splits:
      pool: {domain: pool, n: 1000}
      train: {domain: photo, n: 80}
      val: {domain: photo, n: 40}
      test: {domain: photo, n: 40}
    roles: {pretrain: pool, train: train, val: val, test: test, shifts: []}
backbones:
  mini-clip:
    weights: null  # pretrained here, on shapes4, not the published stand-in
    pretrain: {dataset: shapes4, steps: 20, batch_size: 64, warmup_steps: 2}
methods:
  ft: {steps: 150, lr: 1.0e-3}
  flyp: {steps: 150, lr: 1.0e-3}
experiments:
  - {backbone: mini-clip, dataset: shapes4, recipes: [zeroshot]}
all_targets: []
"""


def _files(root, leave_out=()):
    return {p: p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part in leave_out for part in p.relative_to(root).parts)}  # fmt: skip


def _tables(work):
    """A results folder's tables and figures (not the shared runs, nor a named config's folder)."""
    return _files(work / "results", ("own-dataset", "models", "logits", "backbones"))


@pytest.mark.slow
def test_the_example_end_to_end_beside_another_config(tmp_path):
    """The README's example in a checkout that has another configuration's tables: its own folder
    of tables (numbers far above chance), the other's untouched; the same example without its
    `name` is refused before any job."""
    from robustft.sources.example import write_example

    work = tmp_path / "run"
    write_example(work / "data" / "shapes")
    fast = tmp_path / "fast.yaml"
    fast.write_text(FAST)
    snakemake(work, "all", "--configfile", str(fast))  # another configuration: results/
    theirs = _tables(work)
    assert work / "results" / "tables" / "methods.csv" in theirs

    example = ["--configfile", str(fast), str(EXAMPLE)]
    snakemake(work, "all", *example)
    own = work / "results" / "own-dataset"
    for path in ("metrics.csv", "tables/methods.md", "tables/wiseft.md", "mine/shapes.md",
                 "figures/wiseft_curve.png", "figures/wiseft_curve.pdf"):  # fmt: skip
        assert (own / path).stat().st_size > 0, path
    assert not (own / "mine" / "shapes.compare.csv").exists()
    table = pd.read_csv(own / "mine" / "shapes.csv").set_index("recipe")
    assert table.loc["ft", "id"] >= 50 and table.loc["flyp", "id"] >= 50  # chance: 25 %
    log = (work / "logs/evaluate/shapes/mini-clip/ft/seed0.log").read_text()
    assert "test: 200 images (folder), read at 32 px through preset 'clip'" in log
    mine = _files(own)
    assert _tables(work) == theirs  # the other configuration's tables, byte for byte

    # The example without its name would write its tables over the other config's: refused.
    unnamed = yaml.safe_load(EXAMPLE.read_text())
    del unnamed["name"]
    (tmp_path / "unnamed.yaml").write_text(yaml.safe_dump(unnamed, sort_keys=False))
    logs = _files(work / "logs")
    proc = snakemake(work, "all", "--configfile", str(fast), str(tmp_path / "unnamed.yaml"),
                     check=False)  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "holds the tables of another configuration" in output
    assert "`name: <a name>`" in output
    assert not [line for line in output.splitlines() if line.startswith(("rule ", "localrule "))]
    assert _files(work / "logs") == logs and _files(own) == mine and _tables(work) == theirs
    recorded = (work / "results" / ".config-files").read_text()
    assert recorded == f"config/config.yaml\n{fast.resolve()}\n"

    # Each configuration again: nothing to do, neither folder touched.
    for args in (["--configfile", str(fast)], example):
        again = snakemake(work, "all", *args)
        assert "Nothing to be done" in again.stdout + again.stderr, job_counts(again.stdout)
    assert _files(own) == mine and _tables(work) == theirs
    backbone = json.loads((work / "results/backbones/mini-clip.json").read_text())
    assert backbone["steps"] == 20  # one backbone, pretrained once, shared by both
