"""The interface every fine-tuning method implements, and what they share.

A method turns a pretrained `Backbone` and a dataset into an `Artifact`: the fine-tuned weights in a
form the evaluator (and WiSE-FT interpolation) understands:

* ``kind="classifier"``: state dict of `models.ImageClassifier` (image encoder + linear head);
* ``kind="clip"``: state dict of the whole open_clip model (FLYP): the head is rebuilt from the
  text tower at evaluation time, so interpolating it interpolates both towers and the logit scale.

Methods that train override `build` / `training_step` (and maybe `param_groups`, `train_mode`,
`export`); `Method.run` drives the one shared loop in `training.train`. A training step is a
`training.TrainingStep` built per run: its `forward` returns the loss (so DDP sees every parameter
the loss uses) and it holds the run's state; the method object itself stays stateless.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import distributed
from ..data import DatasetInfo, StepSampler
from ..errors import CorruptFileError, corrupt_message, nonfinite_message
from ..finite import NonFiniteError, nonfinite_tensors
from ..heads import linear_head, zeroshot_head
from ..models import Backbone, ImageClassifier
from ..preprocess import item_seed
from ..scoring import primary, score
from ..training import OptimConfig, TrainingStep, autocast, train


@dataclass
class Artifact:
    kind: str  # classifier | clip
    state_dict: dict[str, torch.Tensor]
    normalize: bool = True  # classifier kind: L2-normalise features before the head
    meta: dict = field(default_factory=dict)
    # How long training took (images/s, steps timed): not saved with the model, so that the same
    # seed gives a byte-identical model.pt; `jobs.finetune` writes it to timing.json beside it.
    timing: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write the model file atomically; weights holding NaN or inf are refused (they would be
        evaluated like any model: a NaN row's arg-max is class 0)."""
        from ..outputs import save_torch

        bad = nonfinite_tensors(self.state_dict.items())
        if bad:
            raise NonFiniteError(
                f"refusing to write model file {path}: {len(bad)} of its {len(self.state_dict)} "
                f"tensors hold NaN or inf ({', '.join(bad[:3])}); the run that trained it diverged"
                " (lower its `lr` or set `grad_clip`) or the model it starts from is non-finite"
            )
        payload = {"kind": self.kind, "state_dict": self.state_dict, "normalize": self.normalize,
                   "meta": self.meta}  # fmt: skip
        save_torch(payload, path)

    @classmethod
    def load(cls, path: str | Path) -> Artifact:
        """Read a fine-tuned model file; an unreadable one raises one CorruptFileError naming it
        and the command that rebuilds it (not torch's advice to unpickle it)."""
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
            artifact = cls(raw["kind"], raw["state_dict"], raw["normalize"], raw["meta"])
        except FileNotFoundError:
            raise
        except Exception as err:  # truncated, overwritten, or not a model.pt of this pipeline
            raise CorruptFileError(corrupt_message("model file", path, err)) from None
        bad = nonfinite_tensors(artifact.state_dict.items())
        if bad:  # loads, but would score at chance: corrupt all the same
            raise CorruptFileError(nonfinite_message("model file", path, bad))
        return artifact


@dataclass
class FineTuneContext:
    backbone: Backbone
    info: DatasetInfo
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    hparams: dict
    seed: int
    device: torch.device
    checkpoint_path: Path | None = None
    inputs: dict[str, Path] = field(
        default_factory=dict
    )  # artifacts of methods this one depends on
    precision: str = "fp32"  # fp32 | bf16 (resolved from config's `precision`)
    # What decides the result (see `jobs.finetune`): a step checkpoint resumes only this job.
    fingerprint: dict | None = None
    # The split a run's in-training model selection scores (`eval_every`, `keep`): its name and
    # data (the ID validation split; the test split only where a recipe keeps `best_test`).
    selection: tuple[str, torch.utils.data.Dataset] | None = None
    run: str | None = None  # the run's name in messages (recipe, dataset, backbone, seed)
    # Holistic transfer with `track_every`: (the test split, the all-class training split) the
    # calibration paper's quantities are measured on over training (`Method.tracker`).
    tracking: tuple[torch.utils.data.Dataset, torch.utils.data.Dataset] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.info.classnames)


def zeroshot_classifier(backbone: Backbone, info: DatasetInfo) -> ImageClassifier:
    """The zero-shot model theta_0 of WiSE-FT: image tower + template-ensemble head."""
    head = zeroshot_head(backbone.clip, backbone.tokenizer, info.class_prompts())
    return ImageClassifier(copy.deepcopy(backbone.image_encoder), head, normalize=True)


FAMILY_HEADS = {"clip": "zeroshot", "supervised": "source", "ssl": "random"}


def initial_classifier(
    backbone: Backbone, info: DatasetInfo, seed: int, head: str | None = None
) -> ImageClassifier:
    """The classifier fine-tuning starts from: `head` (the recipe's `head_init`) or the family's.

    zeroshot: the zero-shot head (WiSE-FT / FLYP; clip only); source: the source model's own head
    over all classes (calibration paper; supervised only); random: a new seeded linear head on the
    unnormalised features (LP-FT's FT, Core-tuning; on CLIP, LP-FT's random head).
    """
    head = head or FAMILY_HEADS[backbone.family]
    if head == "zeroshot":
        if backbone.clip is None:
            raise ValueError(f"head_init zeroshot needs a text tower; {backbone.name!r} has none")
        return zeroshot_classifier(backbone, info)
    encoder = copy.deepcopy(backbone.image_encoder)
    if head == "source":
        source = getattr(backbone, "source_head", None)
        if source is None or source.out_features != len(info.classnames):
            raise ValueError(
                f"head_init source: backbone {backbone.name!r} has no head over the dataset's "
                f"{len(info.classnames)} classes"
            )
        return ImageClassifier(encoder, copy.deepcopy(source), normalize=False)
    return ImageClassifier(
        encoder, linear_head(backbone.feature_dim, len(info.classnames), seed), False
    )


def linear_classifier(backbone: Backbone, state_dict: dict, normalize: bool) -> ImageClassifier:
    """The backbone's image encoder + a linear head, holding a classifier state dict."""
    weight = state_dict["head.weight"]
    model = ImageClassifier(
        copy.deepcopy(backbone.image_encoder),
        nn.Linear(weight.shape[1], weight.shape[0]),
        normalize=normalize,
    )
    model.load_state_dict(state_dict)  # strict: the encoder must match the pretrained one
    return model


def classifier_from_artifact(backbone: Backbone, artifact: Artifact) -> ImageClassifier:
    """A `classifier` artifact (e.g. the linear probe) as a trainable ImageClassifier."""
    return linear_classifier(backbone, artifact.state_dict, artifact.normalize)


class ClassifierStep(TrainingStep):
    """Cross-entropy of `model` on this process's share of each step's batch (FT, LP-FT).

    The global batch of step s is `StepSampler`'s (a function of seed and s, so a resumed run
    draws the batches an uninterrupted one would); each DDP rank keeps its contiguous share.
    """

    def __init__(self, model: nn.Module, ctx: FineTuneContext):
        super().__init__()
        self.model = model
        self.sampler = StepSampler(len(ctx.train), ctx.hparams["batch_size"], ctx.seed)
        self.data, self.device, self.seed = ctx.train, ctx.device, ctx.seed
        self.steps = ctx.hparams.get("steps", 0)
        # Image data on a GPU: step s+1's batch is decoded and augmented by a background thread
        # while step s computes (it is a function of s+1 alone, so the batches stay the same).
        # Not on CPUs, where decoding would compete with the step's own threads.
        self.augments = getattr(ctx.train, "augments", False)
        self.prefetch = self.augments and torch.device(ctx.device).type == "cuda"
        self._pending, self._prefetcher = None, None

    def global_indices(self, step: int):
        return self.sampler.indices(step)

    def _request(self, step: int) -> tuple:
        """`get_batch`'s arguments for this rank's share of step s: indices, and for image data
        one augmentation seed per example, from (seed, step, position in the global batch)."""
        indices = self.global_indices(step)
        if not self.augments:  # packed mini data: as it always was
            return (distributed.shard(indices),)
        positions = distributed.shard(np.arange(len(indices)))
        return distributed.shard(indices), [item_seed(self.seed, step, int(p)) for p in positions]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of step s's batch, through the train transform: a pure function of
        the step, whether prefetched or not."""
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == step:
            out = pending[1].result()
        else:
            out = self.data.get_batch(*self._request(step))
        if self.prefetch and step + 1 < self.steps:
            if self._prefetcher is None:
                from concurrent.futures import ThreadPoolExecutor

                self._prefetcher = ThreadPoolExecutor(1)
            request = self._request(step + 1)  # the sampler is read in this thread only
            self._pending = (step + 1, self._prefetcher.submit(self.data.get_batch, *request))
        return out

    def inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self.batch(step)
        return images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.model(images), labels)


class Method:
    name = "base"

    # -- hooks -----------------------------------------------------------------------------
    def build(self, ctx: FineTuneContext) -> nn.Module:
        """The family's starting classifier; on a holistic-transfer dataset, families without a
        zero-shot head start from the source model (`inputs["reference"]`: the source-data LP),
        so the absent classes have a head to keep."""
        head = ctx.hparams.get("head_init")
        if "reference" in ctx.inputs and head in (None, "source"):
            return classifier_from_artifact(ctx.backbone, Artifact.load(ctx.inputs["reference"]))
        return initial_classifier(ctx.backbone, ctx.info, ctx.seed, head)

    def training_step(self, model: nn.Module, ctx: FineTuneContext) -> TrainingStep:
        """This run's training step around `model` (its forward returns the loss)."""
        return ClassifierStep(model, ctx)

    def param_groups(self, model: nn.Module, ctx: FineTuneContext) -> list[dict] | None:
        """Optional smaller learning rate on the encoder (calibration paper: 0.1x backbone)."""
        scale = ctx.hparams.get("encoder_lr_scale", 1.0)
        if scale == 1.0 or not isinstance(model, ImageClassifier):
            return None
        enc = [p for p in model.encoder.parameters() if p.requires_grad]
        enc_ids = {id(p) for p in enc}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
        return [{"params": enc, "lr_scale": scale}, {"params": rest}]

    def train_mode(self, ctx: FineTuneContext):
        """Train mode; with `freeze_bn`, BatchNorm layers stay in eval mode (LP-FT's val mode)."""
        freeze_bn = ctx.hparams.get("freeze_bn", False)

        def apply(model: nn.Module) -> None:
            model.train()
            if freeze_bn:
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.eval()

        return apply

    def export(self, model: nn.Module, ctx: FineTuneContext) -> Artifact:
        return Artifact("classifier", _cpu(model.state_dict()), normalize=model.normalize)

    def classifier(self, model: nn.Module, ctx: FineTuneContext) -> nn.Module:
        """The trained model as a classifier over the dataset's classes (what is scored)."""
        return model

    def validator(self, model: nn.Module, ctx: FineTuneContext):
        """`validate()`: the model's headline metric on the selection split (in-training model
        selection, `eval_every` / `keep`), or None where the run selects nothing."""
        if ctx.selection is None:
            return None
        name, data = ctx.selection
        protocol = ctx.info.protocol(name)

        @torch.no_grad()
        def validate() -> float:  # the training loop puts the model back in train mode
            model.eval()
            classifier = self.classifier(model, ctx).eval()
            logits, labels = [], []
            for start in range(0, len(data), 512):
                images, y = data.get_batch(np.arange(start, min(start + 512, len(data))))
                with autocast(ctx.device, ctx.precision):
                    logits.append(classifier(images.to(ctx.device)).float().cpu())
                labels.append(y)
            z, y = torch.cat(logits).numpy(), torch.cat(labels).numpy()
            return float(score(z, y, protocol, getattr(data, "groups", None))[primary(protocol)])

        return validate

    def tracker(self, model: nn.Module, ctx: FineTuneContext):
        """`track()`: the calibration paper's quantities over fine-tuning (its Figures 4-6), on
        the test split, or None where the run tracks nothing (`track_every`)."""
        if not ctx.hparams.get("track_every") or ctx.tracking is None:
            return None
        from ..calibration import track_metrics

        test, train_all = ctx.tracking
        seen, ignored = np.asarray(ctx.info.seen_mask), np.asarray(ctx.info.ignored_mask)

        @torch.no_grad()
        def outputs(classifier, data):
            logits, features = [], []
            for start in range(0, len(data), 256):
                images, _ = data.get_batch(np.arange(start, min(start + 256, len(data))))
                images = images.to(ctx.device)
                with autocast(ctx.device, ctx.precision):
                    features.append(classifier.encoder(images).float().cpu())
                    logits.append(classifier(images).float().cpu())
            return torch.cat(logits).numpy(), torch.cat(features).numpy()

        def track() -> dict:
            model.eval()
            classifier = self.classifier(model, ctx).eval()
            z, f = outputs(classifier, test)
            _, f_all = outputs(classifier, train_all)
            return track_metrics(z, f, test.labels.numpy(), f_all, train_all.labels.numpy(),
                                 seen, ignored)  # fmt: skip

        return track

    # -- shared machinery ------------------------------------------------------------------
    def run(self, ctx: FineTuneContext) -> Artifact:
        model = self.build(ctx).to(ctx.device)
        result = train(
            self.training_step(model, ctx),
            None,  # the loss is the step's forward (through DDP in a multi-process run)
            OptimConfig.from_hparams(ctx.hparams),
            seed=ctx.seed,
            param_groups=self.param_groups(model, ctx),
            checkpoint_path=ctx.checkpoint_path,
            device=ctx.device,
            desc=self.name,
            train_mode=self.train_mode(ctx),
            precision=ctx.precision,
            fingerprint=ctx.fingerprint,
            validate=self.validator(model, ctx),
            eval_every=ctx.hparams.get("eval_every"),
            keep="best" if ctx.hparams.get("keep", "last").startswith("best") else "last",
            keep_module=model,
            run=ctx.run,
            track=self.tracker(model, ctx),
            track_every=ctx.hparams.get("track_every"),
        )
        model.eval()
        artifact = self.export(model, ctx)
        artifact.meta.update(history=result.history)
        if result.best_step is not None:  # in-training selection: the state it kept
            artifact.meta.update(kept_step=result.best_step, kept_score=result.best_score)
        if result.tracked is not None:
            artifact.meta.update(track=result.tracked)
        artifact.timing.update(
            train_images_per_second=result.images_per_second(ctx.hparams["batch_size"]),
            steps_timed=result.steps_run,
        )
        return artifact


def _cpu(state_dict: dict) -> dict:
    return {k: v.detach().cpu().clone() for k, v in state_dict.items()}
