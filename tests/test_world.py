"""Tests for robustft.world: determinism, balance, shapes, captions, domain shifts."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

try:  # installed package, or fall back to the source tree
    from robustft import world
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from robustft import world

MIX = {"photo": 0.4, "sketch": 0.2, "rendition": 0.2, "hard": 0.2}


def test_constants():
    assert len(world.CLASSNAMES) == 24 and len(set(world.CLASSNAMES)) == 24
    assert world.CLASSNAMES[:3] == ("circle", "oval", "square")
    assert world.CLASSNAMES[-1] == "rectangle"
    assert world.DOMAINS == ("photo", "v2", "sketch", "rendition", "hard")
    assert len(world.TEMPLATES) == 9
    assert world.PHOTO_TEMPLATES == world.TEMPLATES[:3] + ("a {}.",)
    assert all("{}" in t for t in world.TEMPLATES)


@pytest.mark.parametrize(
    "template,name,expected",
    [
        ("a photo of a {}.", "oval", "a photo of an oval."),
        ("a photo of a {}.", "circle", "a photo of a circle."),
        ("an image of a {}.", "arrow", "an image of an arrow."),
        ("an image of a {}.", "star", "an image of a star."),
        ("a {}.", "x mark", "an x mark."),
        ("a {}.", "hourglass", "an hourglass."),
        ("a cluttered photo of a {}.", "tree", "a cluttered photo of a tree."),
    ],
)
def test_fill_template(template, name, expected):
    assert world.fill_template(template, name) == expected


@pytest.mark.parametrize("domain", world.DOMAINS)
def test_every_domain_renders(domain):
    labels = np.arange(24)
    images, captions = world.render_images(domain, labels, seed=3)
    assert images.shape == (24, 32, 32, 3) and images.dtype == np.uint8
    assert len(captions) == 24
    assert images.std() > 10  # not blank
    again, captions2 = world.render_images(domain, labels, seed=3)
    assert np.array_equal(images, again) and captions == captions2
    other, _ = world.render_images(domain, labels, seed=4)
    assert not np.array_equal(images, other)


def test_image_size():
    images, _ = world.render_images("sketch", np.array([0, 7, 19]), seed=0, image_size=48)
    assert images.shape == (3, 48, 48, 3)


def test_generate_split_balance_and_determinism():
    out = world.generate_split("photo", 96, seed=11)
    assert out["images"].shape == (96, 32, 32, 3) and out["images"].dtype == np.uint8
    assert out["labels"].dtype == np.int64 and out["labels"].shape == (96,)
    assert np.array_equal(np.bincount(out["labels"], minlength=24), np.full(24, 4))
    assert not np.array_equal(out["labels"], np.sort(out["labels"]))  # shuffled
    again = world.generate_split("photo", 96, seed=11)
    assert np.array_equal(out["images"], again["images"])
    assert np.array_equal(out["labels"], again["labels"])
    assert out["captions"] == again["captions"]
    assert not np.array_equal(out["images"], world.generate_split("photo", 96, seed=12)["images"])


def test_generate_split_class_subset():
    out = world.generate_split("v2", 30, seed=1, classes=[2, 5, 9])
    assert set(out["labels"].tolist()) == {2, 5, 9}
    assert np.bincount(out["labels"]).max() == 10


def test_processes_do_not_change_output():
    n = 2 * world._CHUNK + 37  # several chunks, last one partial
    one = world.generate_split("hard", n, seed=5, processes=1)
    two = world.generate_split("hard", n, seed=5, processes=2)
    assert np.array_equal(one["images"], two["images"])
    assert np.array_equal(one["labels"], two["labels"])
    assert one["captions"] == two["captions"]


def test_generate_pool():
    n = 300
    pool = world.generate_pool(n, seed=2, mix=MIX)
    assert pool["images"].shape == (n, 32, 32, 3)
    assert pool["domains"].dtype == np.int64 and pool["domains"].shape == (n,)
    counts = np.bincount(pool["domains"], minlength=len(world.DOMAINS))
    assert counts.tolist() == [120, 0, 60, 60, 60]
    assert (
        np.bincount(pool["labels"], minlength=24).max()
        - np.bincount(pool["labels"], minlength=24).min()
        <= 1
    )
    again = world.generate_pool(n, seed=2, mix=MIX, processes=2)
    assert np.array_equal(pool["images"], again["images"])
    assert np.array_equal(pool["domains"], again["domains"])
    assert pool["captions"] == again["captions"]


def test_captions_sane():
    pool = world.generate_pool(600, seed=9, mix={d: 1.0 for d in world.DOMAINS})
    for cap, lab in zip(pool["captions"], pool["labels"], strict=True):
        name = world.CLASSNAMES[lab]
        assert re.search(rf"\b{name}\b", cap), cap
        assert len(cap.split()) <= 20, cap
        # every article agrees with the word that follows it
        for art, nxt in re.findall(r"\b(an?) (\w+)", cap):
            assert art == ("an" if world._vowel_sound(nxt) else "a"), cap
    assert len(set(pool["captions"])) > 300  # varied


def test_shifted_domains_differ_from_photo():
    labels = np.arange(240) % 24
    stats = {}
    for d in world.DOMAINS:
        imgs = world.render_images(d, labels, seed=0)[0].astype(np.float32) / 255
        gray = imgs.mean(-1)
        sat = (imgs.max(-1) - imgs.min(-1)).mean()
        hf = np.abs(np.diff(gray, axis=1)).mean()  # high-frequency energy
        stats[d] = np.array([gray.mean(), sat, hf])
    for d in ("sketch", "rendition"):
        assert np.abs(stats[d] - stats["photo"]).max() > 0.03, (d, stats[d], stats["photo"])
    assert stats["sketch"][0] > stats["photo"][0] + 0.1  # paper is bright
    assert stats["rendition"][1] > stats["photo"][1] + 0.1  # saturated colours
    # noisier, more clutter (photo-like colours otherwise: the shift is in the scene, not the style)
    assert stats["hard"][2] > 1.3 * stats["photo"][2], (stats["hard"], stats["photo"])
    assert not np.allclose(stats["v2"], stats["photo"], atol=1e-3)


def test_bad_arguments():
    with pytest.raises(ValueError):
        world.render_images("imagenet", np.arange(3), seed=0)
    with pytest.raises(ValueError):
        world.render_images("photo", np.array([24]), seed=0)
    with pytest.raises(ValueError):
        world.generate_pool(10, seed=0, mix={"cartoon": 1.0})


def _hard_scenes(n: int, seed: int):
    """(label, target, distractors, occluder) of n hard-domain layouts."""
    for i in range(n):
        label = i % len(world.CLASSNAMES)
        yield label, *world._hard_layout(label, np.random.default_rng([seed, i]))


def test_hard_target_is_the_largest_mostly_visible_shape():
    """ImageNet-A stand-in, hard but recognisable: every distractor is of another class and much
    smaller than what is visible of the target; the occluder hides less than half of the target."""
    hi = 64
    x, y = world._grid(hi)
    occluded = []
    for label, target, distractors, occluder in _hard_scenes(240, seed=0):
        assert 1 <= len(distractors) <= 2
        mask = np.asarray(world._shape_mask(label, *target, hi)) > 127
        visible = mask.copy()
        if occluder is not None:
            ox, oy, half_w, half_h = occluder
            visible &= ~((np.abs(x - ox) < half_w) & (np.abs(y - oy) < half_h))
            occluded.append(1 - visible.sum() / mask.sum())
            assert occluded[-1] < 0.5, (label, target, occluder)
        for other, *geometry in distractors:
            assert other != label
            assert geometry[2] < 0.6 * target[2]  # radius
            area = (np.asarray(world._shape_mask(other, *geometry, hi)) > 127).sum()
            assert 1.5 * area < visible.sum(), (label, target, other, geometry)
    assert 0.2 < len(occluded) / 240 < 0.5  # some scenes are occluded, most are not
    assert np.mean(occluded) > 0.05  # and the occluder does cover part of the target


def test_hard_layout_deterministic_and_drawn_first():
    """Same generator state, same layout and image; _render_hard draws its geometry first, so a
    position phrase or "partly hidden" in its caption describes that layout."""
    wheres = {world._where(cx, cy) for cx in (0.2, 0.5, 0.8) for cy in (0.2, 0.5, 0.8)}
    named = 0
    for i in range(96):
        label = i % len(world.CLASSNAMES)
        (cx, cy, *_), distractors, occluder = world._hard_layout(label, np.random.default_rng(i))
        assert world._hard_layout(label, np.random.default_rng(i)) == (
            (cx, cy, *_),
            distractors,
            occluder,
        )
        img, caption = world._render_hard(label, np.random.default_rng(i), 32)
        img2, caption2 = world._render_hard(label, np.random.default_rng(i), 32)
        assert np.array_equal(img, img2) and caption == caption2
        assert re.search(rf"\b{world.CLASSNAMES[label]}\b", caption), caption
        assert occluder is not None or "partly hidden" not in caption, caption
        for where in wheres:
            if caption.endswith(where):
                assert where == world._where(cx, cy), (caption, cx, cy)
                named += 1
    assert named > 5  # the position check did run
