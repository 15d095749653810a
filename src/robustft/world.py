"""A deterministic, procedurally generated image world standing in for ImageNet.

Twenty-four pictogram classes ("circle", "star", "fish", ...) are drawn under
nuisance factors (colour, size, position, rotation, mirror flip) and rendered in
five *domains* that mimic ImageNet and its distribution shifts:

* ``photo``     - the in-distribution domain: filled, shaded object on a muted,
  textured background (ImageNet).
* ``v2``        - a fresh re-sample of the photo process, mildly shifted: wider
  scale/rotation ranges, more colour jitter and noise, exposure changes
  (ImageNet-V2).
* ``sketch``    - thin, jittery, sometimes broken pencil outline on paper, with
  stray strokes (ImageNet-Sketch).
* ``rendition`` - posterised cartoon: flat or pattern fill, thick black outline,
  bright saturated background (ImageNet-R).
* ``hard``      - cluttered scenes: distractor shapes of other classes,
  a rim occluder, low contrast and noise: hard, not hopeless (ImageNet-A).

Every image also gets a natural-language caption (used for CLIP pretraining on
the mixed "pool").  Shapes are rasterised as polygon masks at twice the target
resolution with PIL and box-downsampled, which gives antialiased edges cheaply.

Everything is a pure function of its arguments: the same call returns
byte-identical images and identical captions, whatever the number of worker
processes.  Only numpy, Pillow and the standard library are used.
"""

from __future__ import annotations

import colorsys
import functools
import math
import multiprocessing as mp
import re

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "CLASSNAMES",
    "COLOR_NAMES",
    "DOMAINS",
    "PHOTO_TEMPLATES",
    "TEMPLATES",
    "fill_template",
    "generate_labelled",
    "generate_pool",
    "generate_split",
    "render_images",
    "with_article",
]

CLASSNAMES: tuple[str, ...] = (
    "circle", "oval", "square", "triangle", "diamond", "pentagon", "hexagon",
    "star", "cross", "x mark", "ring", "heart", "arrow", "crescent",
    "semicircle", "trapezoid", "hourglass", "lightning bolt", "square frame",
    "cloud", "flower", "tree", "fish", "rectangle",
)  # fmt: skip

DOMAINS: tuple[str, ...] = ("photo", "v2", "sketch", "rendition", "hard")

TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a sketch of a {}.",
    "a drawing of a {}.",
    "a cartoon of a {}.",
    "a painting of a {}.",
    "a cluttered photo of a {}.",
    "a {}.",
)
PHOTO_TEMPLATES: tuple[str, ...] = TEMPLATES[:3] + ("a {}.",)

# Named object colours (RGB in [0, 1]); the names appear in captions.
_COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.55, 0.10),
    "yellow": (0.95, 0.87, 0.15),
    "green": (0.15, 0.62, 0.20),
    "teal": (0.08, 0.58, 0.58),
    "blue": (0.15, 0.30, 0.85),
    "purple": (0.55, 0.20, 0.70),
    "pink": (0.97, 0.55, 0.72),
    "brown": (0.50, 0.30, 0.12),
    "black": (0.08, 0.08, 0.08),
    "white": (0.96, 0.96, 0.96),
    "gray": (0.50, 0.50, 0.50),
}
COLOR_NAMES: tuple[str, ...] = tuple(_COLORS)
_COLOR_RGB = np.array(list(_COLORS.values()), dtype=np.float32)

# Caption style phrases, five per domain.
_STYLES: dict[str, tuple[str, ...]] = {
    "photo": ("a photo of", "a close-up photo of", "a picture of", "an image of", "a snapshot of"),
    "v2": ("a photo of", "a new photo of", "a picture of", "an image of", "a snapshot of"),
    "sketch": ("a sketch of", "a pencil sketch of", "a drawing of", "a line drawing of",
               "an outline of"),
    "rendition": ("a cartoon of", "a painting of", "an illustration of", "a clip art of",
                  "a colorful drawing of"),
    # the last one is preferred for low-contrast images (see _render_hard)
    "hard": ("a cluttered photo of", "a busy photo of", "a noisy photo of", "a hard photo of",
             "a low contrast photo of"),
}  # fmt: skip

_CHUNK = 500  # images per work unit; fixed so output does not depend on `processes`
_POOL_KEY = 99  # seed-stream key of the mixed pool (domains use their index)
_LABELLED_KEY = 98  # seed-stream key of splits with explicit per-image domains and labels


# --------------------------------------------------------------------------- text


def _vowel_sound(word: str) -> bool:
    """True when `word` is spoken with a leading vowel sound ("oval", "x", "hourglass")."""
    w = word.lower()
    if w.startswith(("uni", "use", "one", "eu")):
        return False
    return w[:1] in "aeiou" or w.startswith("hour") or w == "x"


_ARTICLE_RE = re.compile(r"\b([Aa])n? (?=([A-Za-z]+))")


def with_article(text: str) -> str:
    """Make every standalone "a"/"an" agree with the word that follows it."""

    def fix(m: re.Match) -> str:
        art = "an" if _vowel_sound(m.group(2)) else "a"
        return (art.capitalize() if m.group(1) == "A" else art) + " "

    return _ARTICLE_RE.sub(fix, text)


def fill_template(template: str, classname: str) -> str:
    """Format a zero-shot prompt with the right article.

    >>> fill_template("a photo of a {}.", "oval")
    'a photo of an oval.'
    """
    return with_article(template.format(classname))


# ------------------------------------------------------------------------- shapes


def _ngon(
    n: int, r: float = 1.0, phase: float = 90.0, cx: float = 0.0, cy: float = 0.0
) -> np.ndarray:
    a = np.deg2rad(phase + 360.0 * np.arange(n) / n)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], 1)


def _ellipse(rx: float, ry: float, cx: float = 0.0, cy: float = 0.0, n: int = 36) -> np.ndarray:
    a = 2 * np.pi * np.arange(n) / n
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


def _poly(*xy: float) -> np.ndarray:
    """Polygon from flat x0, y0, x1, y1, ... coordinates."""
    return np.array(xy, dtype=float).reshape(-1, 2)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def _star(n: int = 5, r_in: float = 0.42) -> np.ndarray:
    outer, inner = _ngon(n), _ngon(n, r_in, phase=90.0 + 180.0 / n)
    return np.stack([outer, inner], 1).reshape(-1, 2)


def _plus(w: float = 0.28) -> np.ndarray:
    return np.array(
        [
            [-w, 1],
            [w, 1],
            [w, w],
            [1, w],
            [1, -w],
            [w, -w],
            [w, -1],
            [-w, -1],
            [-w, -w],
            [-1, -w],
            [-1, w],
            [-w, w],
        ],
        dtype=float,
    )


def _rotate(p: np.ndarray, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return p @ np.array([[c, s], [-s, c]])


def _heart(n: int = 40) -> np.ndarray:
    t = 2 * np.pi * np.arange(n) / n
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x, y], 1)


def _build_shapes() -> list[list[tuple[np.ndarray, int]]]:
    """Each class is a list of (polygon, fill) drawn in order; fill 0 cuts a hole.

    Coordinates are y-up; every shape is then centred on its bounding box and
    scaled to unit circumradius so that "radius" means the same for all classes.
    """
    half = np.linspace(0, np.pi, 19)
    raw = {
        "circle": [(_ellipse(1, 1), 1)],
        "oval": [(_ellipse(1, 0.58), 1)],
        "square": [(_rect(-1, -1, 1, 1), 1)],
        "triangle": [(_ngon(3), 1)],
        "diamond": [(_poly(0, 1, .66, 0, 0, -1, -.66, 0), 1)],
        "pentagon": [(_ngon(5), 1)],
        "hexagon": [(_ngon(6), 1)],
        "star": [(_star(), 1)],
        "cross": [(_plus(), 1)],
        "x mark": [(_rotate(_plus(0.24), 45), 1)],
        "ring": [(_ellipse(1, 1), 1), (_ellipse(0.58, 0.58), 0)],
        "heart": [(_heart(), 1)],
        "arrow": [(_poly(-1, .2, .15, .2, .15, .58, 1, 0, .15, -.58, .15, -.2, -1, -.2), 1)],
        "crescent": [(_ellipse(1, 1), 1), (_ellipse(0.82, 0.82, 0.42, 0.18), 0)],
        "semicircle": [(np.stack([np.cos(half), np.sin(half)], 1), 1)],
        "trapezoid": [(_poly(-1, -.55, 1, -.55, .5, .55, -.5, .55), 1)],
        "hourglass": [(_poly(-.65, 1, .65, 1, .1, 0, .65, -1, -.65, -1, -.1, 0), 1)],
        "lightning bolt": [(_poly(.2, 1, -.5, -.1, -.05, -.1, -.3, -1, .5, .15, .05, .15), 1)],
        "square frame": [(_rect(-1, -1, 1, 1), 1), (_rect(-0.6, -0.6, 0.6, 0.6), 0)],
        "cloud": [
            (_ellipse(0.3, 0.3, -0.55, -0.1), 1), (_ellipse(0.42, 0.42, -0.12, 0.14), 1),
            (_ellipse(0.37, 0.37, 0.36, 0.03), 1), (_ellipse(0.28, 0.28, 0.66, -0.12), 1),
            (_rect(-0.55, -0.4, 0.66, -0.1), 1),
        ],
        "flower": [(_ellipse(0.34, 0.34, 0.62 * np.cos(a), 0.62 * np.sin(a)), 1)
                   for a in np.deg2rad(90 + 60 * np.arange(6))]
                  + [(_ellipse(0.36, 0.36), 1), (_ellipse(0.14, 0.14), 0)],
        "tree": [(_poly(0, 1, -.5, .35, .5, .35), 1),
                 (_poly(0, .6, -.7, -.3, .7, -.3), 1),
                 (_rect(-0.14, -0.95, 0.14, -0.3), 1)],
        "fish": [(_ellipse(0.62, 0.38, 0.15, 0), 1),
                 (_poly(-.35, 0, -.95, .4, -.85, 0, -.95, -.4), 1),
                 (_ellipse(0.07, 0.07, 0.48, 0.08), 0)],
        "rectangle": [(_rect(-1, -0.52, 1, 0.52), 1)],
    }  # fmt: skip
    shapes = []
    for name in CLASSNAMES:
        parts = [(np.asarray(p, dtype=np.float64), f) for p, f in raw[name]]
        filled = np.concatenate([p for p, f in parts if f])
        centre = (filled.min(0) + filled.max(0)) / 2
        scale = np.linalg.norm(filled - centre, axis=1).max()
        shapes.append([((p - centre) / scale, f) for p, f in parts])
    return shapes


_SHAPES = _build_shapes()


def _shape_mask(
    label: int,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    flip: bool,
    hi: int,
    rng=None,
    jitter: float = 0.0,
) -> Image.Image:
    """Rasterise class `label` into a `hi`x`hi` "L" mask (255 inside).

    (cx, cy) and r are fractions of the image side (y down); angle in degrees.
    `jitter` (hi-res pixels) perturbs every vertex, for hand-drawn wobble.
    """
    img = Image.new("L", (hi, hi), 0)
    draw = ImageDraw.Draw(img)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # flip x, rotate, scale, turn y-up into y-down, translate - as one affine map
    sx = -1.0 if flip else 1.0
    a = np.array([[sx * c, -sx * s], [-s, -c]]) * (r * hi)
    off = np.array([cx * hi, cy * hi])
    for pts, fill in _SHAPES[label]:
        p = pts @ a + off
        if jitter:
            p = p + rng.normal(0.0, jitter, p.shape)
        draw.polygon(p.ravel().tolist(), fill=255 * fill)
    return img


def _down(img: Image.Image | np.ndarray) -> np.ndarray:
    """Box-downsample a 2x mask to float32 coverage in [0, 1] (the antialiasing step)."""
    a = np.asarray(img, dtype=np.float32)
    # summing strided views is ~4x faster than reshape(...).mean() at this size
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) * (0.25 / 255.0)


def _morph(a: np.ndarray, radius: int, op) -> np.ndarray:
    """Separable square erosion (op=np.minimum) or dilation (np.maximum).

    Done with shifted views in numpy because PIL's rank filters cost ~0.25 ms
    per call at 64x64, which would dominate the per-image budget.
    """
    for axis in (0, 1):
        src, out = a, a.copy()
        for s in range(1, radius + 1):
            if axis == 0:
                op(out[s:], src[:-s], out=out[s:])
                op(out[:-s], src[s:], out=out[:-s])
            else:
                op(out[:, s:], src[:, :-s], out=out[:, s:])
                op(out[:, :-s], src[:, s:], out=out[:, :-s])
        a = out
    return a


def _outline(img: Image.Image, inner: int, outer: int) -> np.ndarray:
    """Edge band of a mask as a uint8 array: dilated by `outer` minus eroded by `inner` pixels."""
    a = np.asarray(img)
    hi = _morph(a, outer, np.maximum) if outer else a
    lo = _morph(a, inner, np.minimum) if inner else a
    return hi - lo  # lo <= hi everywhere, so no uint8 wrap-around


# ----------------------------------------------------------------------- textures


@functools.cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [0, 1] (x, y) for a size x size image."""
    v = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(v, v)


@functools.cache
def _interp(size: int, cells: int) -> np.ndarray:
    """(size, cells) linear-interpolation matrix for smooth upsampling of a coarse grid."""
    t = (np.arange(size) + 0.5) / size * (cells - 1)
    i0 = np.minimum(t.astype(int), cells - 2)
    w = (t - i0).astype(np.float32)
    m = np.zeros((size, cells), np.float32)
    m[np.arange(size), i0] = 1 - w
    m[np.arange(size), i0 + 1] = w
    return m


def _lowfreq(rng: np.random.Generator, size: int, cells: int = 5) -> np.ndarray:
    """Smooth random field in roughly [0, 1] (bilinear upsampling of a coarse uniform grid)."""
    m = _interp(size, cells)
    return m @ rng.random((cells, cells), dtype=np.float32) @ m.T


_PATTERNS = ("plain", "gradient", "noise", "stripes", "checks", "dots")
_PATTERN_WORDS = {
    "plain": "plain", "gradient": "gradient", "noise": "blotchy",
    "stripes": "striped", "checks": "checkered", "dots": "dotted",
}  # fmt: skip


def _pattern(rng: np.random.Generator, kind: str, size: int, sharp: bool = False) -> np.ndarray:
    """A (size, size) float32 pattern in [0, 1].

    Periods are fractions of the image side, so patterns scale with `size`.
    """
    x, y = _grid(size)
    if kind == "plain":
        return np.zeros((size, size), np.float32)
    if kind == "noise":
        return _lowfreq(rng, size, int(rng.integers(3, 7)))
    th = rng.uniform(0, np.pi)
    u = x * math.cos(th) + y * math.sin(th)
    if kind == "gradient":
        u = u - u.min()
        return u / max(float(u.max()), 1e-6)
    v = -x * math.sin(th) + y * math.cos(th)
    period = rng.uniform(0.12, 0.3)
    if kind == "stripes":
        p = 0.5 + 0.5 * np.sin((2 * np.pi / period) * u + rng.uniform(0, 2 * np.pi))
    elif kind == "checks":
        p = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    else:  # dots: blobs on a lattice
        p = np.sin((2 * np.pi / period) * u) * np.sin((2 * np.pi / period) * v)
        p = np.clip((p - 0.3) * 2.5, 0, 1)
    if sharp:
        p = (p > 0.5).astype(np.float32)
    return p.astype(np.float32)


def _lerp_rgb(c1: np.ndarray, c2: np.ndarray, p: np.ndarray) -> np.ndarray:
    return c1 + p[..., None] * (c2 - c1)


def _muted(rng: np.random.Generator) -> np.ndarray:
    """A desaturated, mid-luminance colour (photo backgrounds)."""
    return np.clip(rng.uniform(0.25, 0.8) + rng.normal(0.0, 0.07, 3), 0, 1).astype(np.float32)


def _bright(rng: np.random.Generator) -> np.ndarray:
    """A saturated, bright colour (cartoon backgrounds)."""
    return np.array(
        colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0)),
        np.float32,
    )


def _position(rng: np.random.Generator, r: float) -> tuple[float, float]:
    """Object centre such that the circumcircle stays (almost) inside the frame."""
    lo, hi = r * 0.95, 1 - r * 0.95
    return float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))


def _where(cx: float, cy: float) -> str:
    """Coarse position phrase for captions."""
    h = "left" if cx < 0.42 else "right" if cx > 0.58 else ""
    v = "top" if cy < 0.42 else "bottom" if cy > 0.58 else ""
    if not h and not v:
        return "in the center"
    if h and v:
        return f"in the {v} {h}"
    return f"on the {h}" if h else f"at the {v}"


def _size_word(r: float) -> str:
    return "small" if r < 0.27 else "large" if r > 0.34 else "medium"


def _caption(
    rng: np.random.Generator,
    style: str,
    colour: str | None,
    r: float,
    label: int,
    clauses: list[str],
) -> str:
    """style + optional colour (70%) / size (30%) + class name + optional clause (50%)."""
    words = [style, "a"]
    if rng.random() < 0.3:
        words.append(_size_word(r))
    if colour is not None and rng.random() < 0.7:
        words.append(colour)
    words.append(CLASSNAMES[label])
    if clauses and rng.random() < 0.5:
        words.append(clauses[int(rng.integers(len(clauses)))])
    return with_article(" ".join(words))


def _pick_colour(rng: np.random.Generator, jitter: float) -> tuple[str, np.ndarray]:
    k = int(rng.integers(len(COLOR_NAMES)))
    return COLOR_NAMES[k], np.clip(_COLOR_RGB[k] + rng.normal(0.0, jitter, 3), 0, 1).astype(
        np.float32
    )


def _separate(bg: np.ndarray, col: np.ndarray, margin: float = 0.2) -> np.ndarray:
    """Shift a background away from the object colour when the two are nearly identical."""
    diff = col - bg.reshape(-1, 3).mean(0)
    if np.abs(diff).max() < margin:
        bg = np.clip(bg + (-0.3 if col.mean() > 0.5 else 0.3), 0, 1)
    return bg


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------ domains
# Each renderer: (label, rng, size) -> (float32 HxWx3 image in [0, 1], caption).


def _photo_bg(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    kind = _PATTERNS[int(rng.integers(len(_PATTERNS)))]
    c1 = _muted(rng)
    c2 = np.clip(c1 + rng.normal(0.0, 0.13, 3), 0, 1).astype(np.float32)
    return _lerp_rgb(c1, c2, _pattern(rng, kind, size)), kind


def _shaded_object(
    rng: np.random.Generator, col: np.ndarray, cx: float, cy: float, size: int
) -> np.ndarray:
    """Object colour field with directional lighting (and sometimes a faint surface texture)."""
    x, y = _grid(size)
    th = rng.uniform(0, 2 * np.pi)
    light = 1.0 + rng.uniform(0.15, 0.4) * ((x - cx) * math.cos(th) + (y - cy) * math.sin(th)) * 2.5
    if rng.random() < 0.5:
        light = light + 0.12 * (_lowfreq(rng, size, 6) - 0.5)
    return col * light[..., None]


def _render_photo(
    label: int, rng: np.random.Generator, size: int, v2: bool = False
) -> tuple[np.ndarray, str]:
    r = rng.uniform(0.18, 0.45) if v2 else rng.uniform(0.22, 0.40)
    rot = rng.uniform(-25, 25) if v2 else rng.uniform(-18, 18)
    flip = rng.random() < 0.5
    cx, cy = _position(rng, r)
    cname, col = _pick_colour(rng, 0.09 if v2 else 0.04)
    bg, kind = _photo_bg(rng, size)
    bg = _separate(bg, col)

    alpha = _down(_shape_mask(label, cx, cy, r, rot, flip, 2 * size))
    if rng.random() < 0.5:  # soft drop shadow, offset down-right
        sh = np.roll(alpha, (1, 1), axis=(0, 1))
        bg = bg * (1 - 0.3 * sh[..., None])
    a = alpha[..., None]
    img = bg * (1 - a) + _shaded_object(rng, col, cx, cy, size) * a

    clauses = [f"on a {_PATTERN_WORDS[kind]} background", _where(cx, cy)]
    if v2 and rng.random() < 0.3:  # exposure change: gain + gamma
        dark = rng.random() < 0.5
        gain = rng.uniform(0.55, 0.8) if dark else rng.uniform(1.2, 1.5)
        img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25) * gain
        clauses.append("in dim light" if dark else "in bright light")
    sigma = rng.uniform(0.02, 0.07) if v2 else rng.uniform(0.01, 0.05)
    img = img + sigma * rng.standard_normal((size, size, 3), dtype=np.float32)

    style = _STYLES["v2" if v2 else "photo"][int(rng.integers(5))]
    return img, _caption(rng, style, cname, r, label, clauses)


def _render_v2(label: int, rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    return _render_photo(label, rng, size, v2=True)


_INK_NAMES = ("black", "gray", "blue", "red", "green", "purple", "brown")
_INK_P = np.array([0.5, 0.2, 0.06, 0.06, 0.06, 0.06, 0.06])


def _render_sketch(label: int, rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    hi = 2 * size
    k = hi / 64.0  # hi-res pixel scale relative to the 32x32 reference
    r = rng.uniform(0.18, 0.40)
    rot, flip = rng.uniform(-22, 22), rng.random() < 0.5
    cx, cy = _position(rng, r)

    # Paper: off-white, slightly uneven; sometimes ruled or squared, sometimes smudged
    # with graphite.  A plain clean page made sketch easier than photo in the prototype.
    paper = rng.uniform(0.82, 0.98) + rng.normal(0.0, 0.02, 3).astype(np.float32)
    img = paper * (1 + 0.08 * (_lowfreq(rng, size, 4)[..., None] - 0.5))
    u = rng.random()
    if u < 0.3:
        x, y = _grid(size)
        step = rng.uniform(0.15, 0.25)
        lines = (y % step) < 1.0 / size
        if u < 0.12:  # squared paper
            lines |= (x % step) < 1.0 / size
        img = img - rng.uniform(0.08, 0.18) * lines[..., None] * np.array(
            [0.8, 0.5, 0.1], np.float32
        )
    if rng.random() < 0.4:
        img = (
            img
            * (1 - rng.uniform(0.1, 0.25) * np.clip(_lowfreq(rng, size, 4) * 2 - 1, 0, 1))[
                ..., None
            ]
        )

    # Stroke: edge band of a jittered mask, 1-2 hi-res px wide (0.5-1 px at 32x32).
    mask = _shape_mask(label, cx, cy, r, rot, flip, hi, rng, jitter=rng.uniform(0.3, 1.2) * k)
    thin = rng.random() < 0.5
    w = max(1, round((1 if thin else 2) * k))
    inner = int(rng.integers(0, w + 1))
    stroke = _down(_outline(mask, inner, w - inner))
    if thin:  # a 1 px hi-res line has ~50% coverage; press harder so it stays visible
        stroke = np.minimum(stroke * 1.5, 1.0)
    if rng.random() < 0.4:  # sketchy double stroke from a second, differently jittered pass
        mask2 = _shape_mask(
            label,
            cx,
            cy,
            r * rng.uniform(0.97, 1.03),
            rot + rng.normal(0, 3),
            flip,
            hi,
            rng,
            1.5 * k,
        )
        stroke = np.maximum(stroke, rng.uniform(0.4, 0.8) * _down(_outline(mask2, 1, 0)))
    if rng.random() < 0.5:  # broken strokes: drop pieces where a smooth noise field is low
        stroke = stroke * (_lowfreq(rng, size, 7) > rng.uniform(0.2, 0.4))

    # Stray pencil lines and scribbles that belong to no shape.
    n_stray = int(rng.integers(0, 5))
    if n_stray:
        canvas = Image.new("L", (hi, hi), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(n_stray):
            p = rng.uniform(0, hi, 2)
            q = p + rng.normal(0, hi * 0.3, 2)
            draw.line(
                [*p, *q],
                fill=int(rng.integers(100, 220)),
                width=int(max(1, round(k * rng.integers(1, 3)))),
            )
        stroke = np.maximum(stroke, _down(canvas))

    ink_name = _INK_NAMES[int(rng.choice(len(_INK_NAMES), p=_INK_P))]
    ink = _COLOR_RGB[COLOR_NAMES.index(ink_name)] * 0.8
    strength = (
        rng.uniform(0.45, 0.8) if rng.random() < 0.45 else rng.uniform(0.85, 1.0)
    )  # faint pencil on some
    a = (stroke * strength)[..., None]
    img = img * (1 - a) + ink * a
    img = img + rng.uniform(0.01, 0.03) * rng.standard_normal((size, size, 3), dtype=np.float32)

    style = _STYLES["sketch"][int(rng.integers(5))]
    clauses = ["on paper", "on white paper", _where(cx, cy), "in pencil"]
    return img, _caption(rng, style, ink_name, r, label, clauses)


_FILLS = ("stripes", "dots", "checks")
_FILL_WORDS = {
    "stripes": "with stripes",
    "dots": "with polka dots",
    "checks": "with a checkered pattern",
}


def _render_rendition(label: int, rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    hi = 2 * size
    k = hi / 64.0
    r = rng.uniform(0.22, 0.40)
    rot, flip = rng.uniform(-18, 18), rng.random() < 0.5
    cx, cy = _position(rng, r)
    cname, col = _pick_colour(rng, 0.03)

    # Bright saturated background, plain or with a bold pattern.
    c1 = _bright(rng)
    if rng.random() < 0.5:
        kind = ("stripes", "checks", "dots", "gradient")[int(rng.integers(4))]
        bg = _lerp_rgb(c1, _bright(rng), _pattern(rng, kind, size, sharp=kind != "gradient"))
    else:
        bg = np.broadcast_to(c1, (size, size, 3))
    bg = _separate(bg, col, 0.25)

    # Flat (or pattern) fill with a thick black outline straddling the edge.
    mask = _shape_mask(label, cx, cy, r, rot, flip, hi)
    fill = np.broadcast_to(col, (size, size, 3))
    clauses = [_where(cx, cy)]
    if rng.random() < 0.4:
        fk = _FILLS[int(rng.integers(len(_FILLS)))]
        second = np.float32(1.0) - col if rng.random() < 0.5 else _bright(rng)
        fill = _lerp_rgb(col, second, _pattern(rng, fk, size, sharp=True))
        clauses.append(_FILL_WORDS[fk])
    else:
        clauses.append("in flat colors")
    a = _down(mask)[..., None]
    img = bg * (1 - a) + fill * a
    t = max(1, round(rng.integers(3, 5) * k))  # 1.5-2 px at 32x32
    edge = _down(_outline(mask, t - t // 2, t // 2))[..., None]
    img = img * (1 - edge) + 0.05 * edge

    levels = int(rng.integers(3, 6))  # posterise
    img = np.round(np.clip(img, 0, 1) * levels) / levels

    style = _STYLES["rendition"][int(rng.integers(5))]
    return img, _caption(rng, style, cname, r, label, clauses)


# Geometry of the hard domain, relative to the target.
_HARD_DISTRACTOR_SCALE = (0.35, 0.55)  # distractor radius / target radius (for equal areas)
_HARD_OCCLUDER_HALF = (0.35, 0.6)  # occluder half-width and half-height / target radius


@functools.cache
def _unit_area(label: int) -> float:
    """Area of class `label` at unit circumradius (a ring covers less than a square)."""
    hi = 256
    return float(np.count_nonzero(np.asarray(_shape_mask(label, 0.5, 0.5, 0.5, 0.0, False, hi))))


def _hard_layout(label: int, rng: np.random.Generator) -> tuple[tuple, list[tuple], tuple | None]:
    """Where the shapes of a hard scene go: the target, its distractors and the occluder.

    Returns (target, distractors, occluder): target = (cx, cy, r, angle, flip); each distractor =
    (class, cx, cy, r, angle, flip) of a class other than `label`, covering at most 0.55^2 = 30 %
    of the target's area; occluder = (ox, oy, half_w, half_h), a box centred on the target's rim
    (35 % of scenes; it hides under half of the target), else None. So the target stays the
    largest, mostly visible shape: hard, but recognisable.
    """
    r = rng.uniform(0.24, 0.38)
    target = (*_position(rng, r), r, rng.uniform(-30, 30), rng.random() < 0.5)
    distractors = []
    for _ in range(int(rng.integers(1, 3))):
        other = int(rng.integers(len(CLASSNAMES) - 1))
        other += other >= label
        area_ratio = min(1.0, _unit_area(label) / _unit_area(other))
        rd = r * rng.uniform(*_HARD_DISTRACTOR_SCALE) * math.sqrt(area_ratio)
        distractors.append(
            (other, *_position(rng, rd), rd, rng.uniform(-40, 40), rng.random() < 0.5)
        )
    occluder = None
    if rng.random() < 0.35:
        half_w, half_h = rng.uniform(*_HARD_OCCLUDER_HALF, 2) * r
        t = rng.uniform(0, 2 * np.pi)
        occluder = (
            target[0] + 0.8 * r * math.cos(t),
            target[1] + 0.8 * r * math.sin(t),
            half_w,
            half_h,
        )
    return target, distractors, occluder


def _render_hard(label: int, rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """ImageNet-A stand-in: a photo-like object in a cluttered, partly hidden, noisy scene.

    Each nuisance alone is mild (`_hard_layout`: 1-2 much smaller distractors of other classes, an
    occluder over part of the rim in 35 % of scenes; low contrast in 30 %; noise above photo's), so
    the class stays recognisable; together they cost a photo-trained model most of its accuracy.
    """
    hi = 2 * size
    (cx, cy, r, rot, flip), distractors, occluder = _hard_layout(label, rng)
    cname, col = _pick_colour(rng, 0.08)
    bg, _ = _photo_bg(rng, size)
    if rng.random() < 0.5:  # busier background than photo
        bg = bg + 0.12 * (_pattern(rng, _PATTERNS[int(rng.integers(2, 6))], size)[..., None] - 0.5)
    bg = _separate(bg, col)  # low contrast is chosen below, never left to chance
    img = bg
    for other, dx, dy, rd, drot, dflip in distractors:  # underneath the target
        m = _down(_shape_mask(other, dx, dy, rd, drot, dflip, hi))[..., None]
        img = img * (1 - m) + _pick_colour(rng, 0.08)[1] * m

    low = rng.random() < 0.3
    if low:  # pull the object colour towards the background
        mean_bg = bg.reshape(-1, 3).mean(0)
        col = mean_bg + (col - mean_bg) * rng.uniform(0.5, 0.75)
    alpha = _down(_shape_mask(label, cx, cy, r, rot, flip, hi))[..., None]
    img = img * (1 - alpha) + _shaded_object(rng, col, cx, cy, size) * alpha

    clauses = ["among other shapes", "with clutter", _where(cx, cy)]
    if occluder is not None:  # a textured box over part of the target's rim
        x, y = _grid(size)
        ox, oy, half_w, half_h = occluder
        occ = ((np.abs(x - ox) < half_w) & (np.abs(y - oy) < half_h)).astype(np.float32)[..., None]
        patch = _lerp_rgb(
            _muted(rng), _muted(rng), _pattern(rng, _PATTERNS[int(rng.integers(6))], size)
        )
        img = img * (1 - occ) + patch * occ
        clauses.append("partly hidden")
    img = img + rng.uniform(0.03, 0.07) * rng.standard_normal((size, size, 3), dtype=np.float32)

    styles = _STYLES["hard"]
    style = styles[4] if low and rng.random() < 0.5 else styles[int(rng.integers(4))]
    return img, _caption(rng, style, cname, r, label, clauses)


_RENDERERS = (_render_photo, _render_v2, _render_sketch, _render_rendition, _render_hard)


# ---------------------------------------------------------------------- batching


def _render_batch(domains: np.ndarray, labels: np.ndarray, rng: np.random.Generator, size: int):
    """Render images one by one from a single sequential generator."""
    n = len(labels)
    out = np.empty((n, size, size, 3), np.uint8)
    caps = []
    for i in range(n):
        img, cap = _RENDERERS[int(domains[i])](int(labels[i]), rng, size)
        out[i] = _to_uint8(img)
        caps.append(cap)
    return out, caps


def _domain_index(domain: str) -> int:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {DOMAINS}")
    return DOMAINS.index(domain)


def _check(size: int, seed: int) -> None:
    if size < 8:
        raise ValueError("image_size must be >= 8")
    if seed < 0:
        raise ValueError("seed must be non-negative")


def render_images(
    domain: str, labels: np.ndarray, seed: int, image_size: int = 32
) -> tuple[np.ndarray, list[str]]:
    """Render one image per label in `domain`.

    Returns (uint8 array N x image_size x image_size x 3, list of N captions);
    deterministic in (domain, labels, seed, image_size).
    """
    d = _domain_index(domain)
    _check(image_size, seed)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSNAMES)):
        raise ValueError("labels out of range")
    rng = np.random.default_rng([seed, d])
    return _render_batch(np.full(len(labels), d), labels, rng, image_size)


def _chunk_job(args):
    seed, key, chunk, domains, labels, size = args
    # Chunk seeds depend on (seed, stream key, chunk index) only, never on the worker count.
    return _render_batch(domains, labels, np.random.default_rng([seed, key, chunk, 1]), size)


def _render_chunked(
    key: int, domains: np.ndarray, labels: np.ndarray, seed: int, processes: int, size: int
):
    n = len(labels)
    jobs = [
        (seed, key, j, domains[s : s + _CHUNK], labels[s : s + _CHUNK], size)
        for j, s in enumerate(range(0, n, _CHUNK))
    ]
    if processes > 1 and len(jobs) > 1:
        method = "fork" if "fork" in mp.get_all_start_methods() else None
        with mp.get_context(method).Pool(min(processes, len(jobs))) as pool:
            results = pool.map(_chunk_job, jobs, chunksize=1)
    else:
        results = [_chunk_job(j) for j in jobs]
    images = (
        np.concatenate([r[0] for r in results])
        if results
        else np.empty((0, size, size, 3), np.uint8)
    )
    captions = [c for r in results for c in r[1]]
    return images, captions


def _balanced_labels(rng: np.random.Generator, n: int, classes: list[int]) -> np.ndarray:
    """n labels cycling through `classes` (counts differ by at most one), shuffled."""
    cls = np.asarray(classes, dtype=np.int64)
    return rng.permutation(cls[np.arange(n) % len(cls)])


def generate_split(
    domain: str,
    n: int,
    seed: int,
    classes: list[int] | None = None,
    processes: int = 1,
    image_size: int = 32,
) -> dict:
    """A class-balanced, shuffled labelled split of one domain.

    Returns {"images": uint8 N x H x W x 3, "labels": int64 N, "captions": list[str]}.
    The output is identical for every value of `processes`.
    """
    d = _domain_index(domain)
    _check(image_size, seed)
    classes = list(range(len(CLASSNAMES))) if classes is None else [int(c) for c in classes]
    if not classes or min(classes) < 0 or max(classes) >= len(CLASSNAMES):
        raise ValueError("classes must be a non-empty list of valid class indices")
    labels = _balanced_labels(np.random.default_rng([seed, d, 0]), n, classes)
    images, captions = _render_chunked(d, np.full(n, d), labels, seed, processes, image_size)
    return {"images": images, "labels": labels, "captions": captions}


def _mix_counts(n: int, mix: dict[str, float]) -> np.ndarray:
    """Per-domain counts summing to n, proportional to `mix` (largest remainder)."""
    frac = np.zeros(len(DOMAINS))
    for name, f in mix.items():
        if f < 0:
            raise ValueError("mix fractions must be non-negative")
        frac[_domain_index(name)] = f
    if frac.sum() <= 0:
        raise ValueError("mix must have a positive total")
    want = frac / frac.sum() * n
    counts = np.floor(want).astype(np.int64)
    order = np.argsort(-(want - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def generate_pool(
    n: int, seed: int, mix: dict[str, float], processes: int = 1, image_size: int = 32
) -> dict:
    """A captioned pretraining pool mixing domains by the fractions in `mix`.

    Returns the generate_split dict plus "domains": int64 indices into DOMAINS.
    """
    _check(image_size, seed)
    rng = np.random.default_rng([seed, _POOL_KEY, 0])
    domains = rng.permutation(np.repeat(np.arange(len(DOMAINS)), _mix_counts(n, mix)))
    labels = _balanced_labels(rng, n, list(range(len(CLASSNAMES))))
    images, captions = _render_chunked(_POOL_KEY, domains, labels, seed, processes, image_size)
    return {
        "images": images,
        "labels": labels,
        "captions": captions,
        "domains": domains.astype(np.int64),
    }


def generate_labelled(
    domains: np.ndarray, labels: np.ndarray, seed: int, processes: int = 1, image_size: int = 32
) -> dict:
    """Render one image per (domain index, class index) pair, in the given order.

    For splits whose class frequencies or domain mix the caller decides (imbalanced classes,
    groups of domains). Deterministic in its arguments, whatever `processes` is.
    """
    _check(image_size, seed)
    domains = np.asarray(domains, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(domains) != len(labels):
        raise ValueError("domains and labels must have the same length")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSNAMES)):
        raise ValueError("labels out of range")
    if domains.size and (domains.min() < 0 or domains.max() >= len(DOMAINS)):
        raise ValueError("domains out of range")
    images, captions = _render_chunked(_LABELLED_KEY, domains, labels, seed, processes, image_size)
    return {"images": images, "labels": labels, "captions": captions, "domains": domains}
