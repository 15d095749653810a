"""Fine-tuning methods: one module each, all behind `base.Method`.

This registry is plain data so that the Snakefile can validate a config (method names, which methods
need a text tower, which hyper-parameters each method reads) without importing torch. Adding a
method = a module in this package, one entry here (with the hyper-parameter keys its code reads),
its hyper-parameters in config, and the schema's method list (plus the types of any new keys in the
schema's `$defs.hparams`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class MethodInfo:
    paper: str  # where the method comes from
    needs_text: bool  # needs a text tower (CLIP family only)
    trains: bool  # runs the training loop
    depends_on: str | None = None  # another method whose artifact this one starts from
    # Hyper-parameter keys the method's code reads: `required` ones must be present once method
    # defaults and dataset/backbone overrides are merged; any other key is refused (config.py).
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    # Keys the method's code reads with a default that changes its result: a config that takes no
    # value from the mini defaults (`method_defaults: none`, config/paper.yaml) must set each of
    # them for every run, with the keys its optimiser reads (`OPTIMIZER_KEYS`).
    protocol: tuple[str, ...] = ()
    # Does the run's seed change its result? Not for a deterministic fit on fixed data (zero-shot
    # head, linear probe): their runs of seeds 1, 2, ... would repeat seed 0's, so every seed of
    # such a recipe is its seed-0 run (`config.run_seed`). A k-shot recipe (`shots`) is seeded:
    # the seed draws its examples.
    seeded: bool = True

    @property
    def hparams(self) -> tuple[str, ...]:
        """Every key the method accepts, required first."""
        return self.required + self.optional

    def explicit_keys(self, hp: dict) -> tuple[str, ...]:
        """The keys a run of this method must set where nothing comes from the method defaults:
        the required ones, the protocol ones, and those the run's optimiser reads."""
        optimizer = (
            OPTIMIZER_KEYS.get(hp.get("optimizer"), ()) if "optimizer" in self.protocol else ()
        )
        return tuple(dict.fromkeys([*self.required, *self.protocol, *optimizer]))


# The shared training loop: `training.OptimConfig` (steps, lr and the optional optimiser keys) and
# `base.Method.batch` (batch_size).
TRAIN_REQUIRED = ("steps", "batch_size", "lr")
OPTIM_OPTIONAL = (
    "weight_decay",
    "warmup_steps",
    "partial_warmup",  # config.py: a run that ends inside its warm-up says so
    "grad_clip",
    "optimizer",
    "betas",
    "momentum",
    "nesterov",
    "eps",
    "steps_per_epoch",
    "accumulate_steps",
    "checkpoint_every",
)
# What a paper run of the shared loop must state (`MethodInfo.protocol`): the training loop's
# defaults (AdamW, weight decay 0.1, per-step cosine, one forward per step, no clipping) are
# nobody's protocol; nor is keeping the last state without saying so.
TRAIN_PROTOCOL = ("optimizer", "weight_decay", "warmup_steps", "grad_clip", "steps_per_epoch",
                  "accumulate_steps", "keep", "preprocess")  # fmt: skip
# The keys each optimiser reads beside lr and weight decay (`training.make_optimizer`).
OPTIMIZER_KEYS = {
    "sgd": ("momentum", "nesterov"),
    "adamw": ("betas", "eps"),
    "adam": ("betas", "eps"),
    "adabelief": ("betas", "eps"),
    "rmsprop": ("momentum", "eps"),
    "adadelta": ("eps",),
    "adagrad": ("eps",),
}
# Read by the fine-tuning job before the method runs (`jobs.finetune`): k-shot training data, and
# the preprocessing preset of image data (`robustft.preprocess`; default: the dataset's).
DATA_OPTIONAL = ("shots", "preprocess")
# `jobs.finetune`: how many DDP processes (GPUs) train one run (`robustft.distributed`); the
# training loop's model selection: score the model every `eval_every` steps, `keep` the last state
# or the best on ID validation (`best_test`: the test split, where a recipe declares the paper did);
# on holistic-transfer data, measure the calibration paper's quantities every `track_every` steps.
RUN_OPTIONAL = ("gpus", "eval_every", "keep", "track_every")
# `base.Method.param_groups` (encoder_lr_scale; only for an `ImageClassifier`, so not FLYP's CLIP)
# and `base.Method.train_mode` (freeze_bn; every trained model).
# `base.initial_classifier` (head_init: the family's default head, or one named: zeroshot,
# random, source).
CLASSIFIER_OPTIONAL = (
    *OPTIM_OPTIONAL, *DATA_OPTIONAL, *RUN_OPTIONAL, "encoder_lr_scale", "freeze_bn", "head_init"
)  # fmt: skip
CLASSIFIER_PROTOCOL = (*TRAIN_PROTOCOL, "encoder_lr_scale", "freeze_bn")


METHODS: dict[str, MethodInfo] = {
    "zeroshot": MethodInfo(
        "CLIP (Radford et al. 2021); WiSE-FT's template-ensemble head", True, False, seeded=False
    ),
    "lp": MethodInfo(
        "Linear probe (LP-FT, Kumar et al. ICLR 2022)",
        False,
        False,
        required=("c_min_log10", "c_max_log10", "c_steps", "max_iter"),
        optional=DATA_OPTIONAL,
        protocol=("preprocess",),
        seeded=False,  # features of a frozen encoder (eval transform) + a deterministic solver
    ),
    "ft": MethodInfo(
        "End-to-end fine-tuning (WiSE-FT, Wortsman et al. CVPR 2022)",
        False,
        True,
        required=TRAIN_REQUIRED,
        optional=CLASSIFIER_OPTIONAL,
        protocol=(*CLASSIFIER_PROTOCOL, "head_init"),
    ),
    "lpft": MethodInfo(
        "LP-FT (Kumar et al. ICLR 2022)",
        False,
        True,
        depends_on="lp",
        required=TRAIN_REQUIRED,
        optional=CLASSIFIER_OPTIONAL,
        protocol=CLASSIFIER_PROTOCOL,
    ),
    "l2sp": MethodInfo(
        "L2-SP (Li et al. 2018), as run in FLYP and LP-FT",
        False,
        True,
        required=(*TRAIN_REQUIRED, "l2sp_lambda"),
        optional=CLASSIFIER_OPTIONAL,
        protocol=(*CLASSIFIER_PROTOCOL, "head_init"),
    ),
    "flyp": MethodInfo(
        "FLYP (Goyal et al. CVPR 2023)",
        True,
        True,
        required=TRAIN_REQUIRED,
        optional=(
            *OPTIM_OPTIONAL,
            *DATA_OPTIONAL,
            *RUN_OPTIONAL,
            "freeze_bn",
            "templates",
            "loss",
            "collisions",
            "ce_weight",
        ),  # fmt: skip
        protocol=TRAIN_PROTOCOL,
    ),
    "coretuning": MethodInfo(
        "Core-tuning (Zhang et al. NeurIPS 2021)",
        False,
        True,
        required=(*TRAIN_REQUIRED, "eta", "mixup_alpha", "tau", "proj_dim"),
        optional=(*CLASSIFIER_OPTIONAL, "focal", "hard_mixup", "smooth_classifier"),
        protocol=(*CLASSIFIER_PROTOCOL, "head_init"),
    ),
}


def get_method(name: str):
    """The method object for `name` (imports its module, and so torch)."""
    if name not in METHODS:
        raise KeyError(f"unknown method {name!r}; valid methods: {', '.join(METHODS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    return module.METHOD
