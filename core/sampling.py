# SPDX-License-Identifier: GPL-3.0-or-later
"""The sample plan (bpy-free): which sample i is, from (GenerationConfig, Preset) alone.

Order (expression-major, camera-minor)::

    emotion 0: expression draw 0: view 0, view 1, ..., view V-1
               expression draw 1: view 0, ...
               ...                              (the last draw may have fewer views)
    emotion 1: ...

``V`` = ``config.camera.views`` (or the number of source vertices for layout ``object``).
All views of one expression draw share the AU intensities, the identity and the lighting
(the mesh and the world change once per expression, the camera once per sample: cheap for
Cycles' persistent data, and a consistent multi-view set); the camera roll jitter is drawn
per sample.

Determinism: everything about sample ``i`` depends only on ``(seed, i)`` (and the
configuration that defines the plan): the expression draw of sample ``i`` uses the
generator ``SeedSequence([seed, i0, 0])`` where ``i0`` is the index of the first sample of
that draw (a function of ``i``), the identity seed comes from ``SeedSequence([seed, i0, 1])``,
the lighting (HDRI, rotation, strength) from ``SeedSequence([seed, i0, 3])`` and the
per-sample roll jitter from ``SeedSequence([seed, i, 2])``. No state is
carried from sample to sample, so a shard or a resumed run reproduces exactly the same
samples as a single uninterrupted run.

Sampling modes:

* ``random``: each AU of the emotion uniform in its [min, max] (rounded to 1e-6 so the
  value set on the rig is exactly the label written).
* ``grid``: the original script's behaviour: ``grid_steps`` evenly spaced values per AU
  (``linspace(min, max, N)``; one step = the middle of the range) and the full product
  over the emotion's AUs, in ``itertools.product`` order (the last AU varies fastest).
  Expression draw ``g`` of an emotion takes product entry ``g % len(product)``; so the
  full product is rendered exactly once per view when the emotion gets
  ``grid_size(...) * views`` samples (see :func:`grid_size`).

Counts per emotion: explicit ``config.emotion_counts`` for the emotions that have one;
the remaining emotions share ``config.count - sum(explicit)`` by ``config.emotion_weights``
(default weight 1) with the largest-remainder rule, ties going to the emotion listed
first. So ``--count N --emotions A,B,C`` splits N evenly, the remainder going to the first
ones listed.

Shards: ``--shard K/N`` = the expression draws whose run-wide number ``d`` has
``d % N == K`` (all views of a draw in one shard). Shards and render order only decide who
renders a sample and when, never what it contains.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

import numpy as np

from .config import ConfigError, GenerationConfig, Preset, au_sort_key, canonical_au, canonical_emotion

#: Stream numbers of the per-sample SeedSequences (part of the dataset contract: changing
#: them changes every dataset generated with a given seed).
STREAM_EXPRESSION = 0
STREAM_IDENTITY = 1
STREAM_SAMPLE = 2
STREAM_LIGHTING = 3

SAMPLING_MODES = ("random", "grid")


@dataclass(frozen=True)
class Sample:
    """Everything about one sample that does not need Blender."""

    index: int  # global index i (0 .. total-1)
    sample_id: str
    emotion: str
    expression: int  # index of the first sample of this expression draw (the draw's key)
    draw: int  # expression draw number within the emotion
    view: int  # camera view index (0 .. views-1)
    aus: dict[str, float] = field(hash=False)  # the emotion's AUs -> intensity (others are 0)
    identity_seed: int = 0
    roll: float = 0.0  # camera roll jitter, degrees
    hdri: str | None = None  # name of the studio HDRI (None: scene lighting / none available)
    hdri_rotation: float = 0.0  # degrees about the world Z axis
    hdri_strength: float = 1.0

    def au_row(self, columns) -> list[float]:
        return [float(self.aus.get(au, 0.0)) for au in columns]


def sample_id(i: int) -> str:
    """Stable, sortable id of sample i (``000123``; more digits past 999999)."""
    return f"{int(i):06d}"


def _rng(seed: int, key: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(key), int(stream)]))


def _largest_remainder(total: int, names: list[str], weights: list[float]) -> dict[str, int]:
    wsum = float(sum(weights))
    if total <= 0 or not names:
        return {n: 0 for n in names}
    if wsum <= 0:
        raise ConfigError(f"emotion weights of {', '.join(names)} are all 0: nothing to share {total} samples by")
    quotas = [total * w / wsum for w in weights]
    base = [math.floor(q + 1e-9) for q in quotas]
    left = total - sum(base)
    # largest fractional part first; ties: the emotion listed first
    order = sorted(range(len(names)), key=lambda k: (-(quotas[k] - base[k]), k))
    for k in order[:left]:
        base[k] += 1
    return dict(zip(names, base))


def emotion_counts(config: GenerationConfig, preset: Preset) -> dict[str, int]:
    """Samples per emotion, in the order of ``config.emotions`` (validated; ConfigError)."""
    emotions: list[str] = []
    for e in config.emotions:
        name = canonical_emotion(e)
        if name in emotions:
            raise ConfigError(f"emotion {name} listed twice")
        emotions.append(name)
    if not emotions:
        raise ConfigError("no emotion selected")
    missing = [e for e in emotions if e not in preset.emotions]
    if missing:
        raise ConfigError(
            f"emotion(s) {', '.join(missing)} not in preset {preset.name!r} "
            f"(it defines: {', '.join(preset.emotions) or 'none'})"
        )
    explicit: dict[str, int] = {}
    for e, n in (config.emotion_counts or {}).items():
        name = canonical_emotion(e)
        if name not in emotions:
            raise ConfigError(f"a sample count is given for {name}, which is not among the selected emotions")
        if isinstance(n, bool) or int(n) != n or int(n) < 0:
            raise ConfigError(f"sample count of {name} must be a whole number >= 0, got {n!r}")
        explicit[name] = int(n)
    weights: dict[str, float] = {}
    for e, w in (config.emotion_weights or {}).items():
        name = canonical_emotion(e)
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ConfigError(f"weight of {name} must be a number, got {w!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ConfigError(f"weight of {name} must be >= 0, got {w!r}")
        weights[name] = w
    rest = [e for e in emotions if e not in explicit]
    counts = dict(explicit)
    if rest:
        if isinstance(config.count, bool) or int(config.count) != config.count or config.count < 0:
            raise ConfigError(f"count must be a whole number >= 1, got {config.count!r}")
        remaining = int(config.count) - sum(explicit.values())
        if remaining < 0:
            raise ConfigError(
                f"the explicit per-emotion counts ({sum(explicit.values())}) exceed the total count "
                f"{config.count}; raise the total or clear the explicit counts"
            )
        counts.update(_largest_remainder(remaining, rest, [weights.get(e, 1.0) for e in rest]))
    counts = {e: counts[e] for e in emotions}
    if sum(counts.values()) <= 0:
        raise ConfigError("nothing to generate: every selected emotion has 0 samples")
    return counts


def grid_values(lo: float, hi: float, steps: int) -> np.ndarray:
    """``steps`` evenly spaced values in [lo, hi] (one step = the middle of the range)."""
    if steps == 1:
        return np.array([round((lo + hi) / 2.0, 6)])
    return np.round(np.linspace(lo, hi, steps), 6)


def grid_size(preset: Preset, emotion: str, steps: int) -> int:
    """Number of AU combinations of ``emotion`` in grid mode (steps ** number of AUs)."""
    return int(steps) ** len(preset.emotions[canonical_emotion(emotion)].aus)


def _check_preset(preset: Preset, emotions) -> None:
    for e in emotions:
        spec = preset.emotions[e]
        for au, rng in spec.aus.items():
            if canonical_au(au) != au:
                raise ConfigError(f"emotion {e}: AU name {au!r} is not canonical (expected {canonical_au(au)!r})")
            try:
                lo, hi = (float(v) for v in rng)
            except (TypeError, ValueError):
                raise ConfigError(f"emotion {e} {au}: expected [min, max], got {rng!r}") from None
            if not (0.0 <= lo <= 1.0 and 0.0 <= hi <= 1.0):
                raise ConfigError(f"emotion {e} {au}: intensities must lie in [0, 1], got [{lo}, {hi}]")
            if lo > hi:
                raise ConfigError(f"emotion {e} {au}: min {lo} > max {hi}")


class SamplePlan:
    """All samples of a run, computed lazily: ``plan[i]`` is a :class:`Sample`.

    ``views``: camera views per expression draw (default ``config.camera.views``);
    ``hdris``: names of the available studio HDRIs (sorted by the caller; the choice of
    sample i is ``hdris[k]`` for a k drawn from its generator).
    """

    def __init__(self, config: GenerationConfig, preset: Preset, views: int | None = None, hdris=()):
        if config.sampling not in SAMPLING_MODES:
            raise ConfigError(f"unknown sampling mode {config.sampling!r} (expected one of: {', '.join(SAMPLING_MODES)})")
        if config.sampling == "grid" and (isinstance(config.grid_steps, bool) or int(config.grid_steps) < 1):
            raise ConfigError(f"grid steps must be >= 1, got {config.grid_steps!r}")
        if isinstance(config.seed, bool) or int(config.seed) != config.seed or config.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0, got {config.seed!r}")
        self.config = config
        self.preset = preset
        self.seed = int(config.seed)
        self.views = int(views if views is not None else config.camera.views)
        if self.views < 1:
            raise ConfigError(f"views must be >= 1, got {self.views}")
        self.counts = emotion_counts(config, preset)
        _check_preset(preset, self.counts)
        self.emotions = list(self.counts)
        self.offsets: list[int] = []
        acc = 0
        for e in self.emotions:
            self.offsets.append(acc)
            acc += self.counts[e]
        self.total = acc
        self.au_columns = preset.au_columns()
        self.hdris = tuple(hdris)
        self.roll_jitter = float(config.camera.roll_jitter)
        lo, hi = config.lighting.strength_range
        self.strength_range = (float(lo), float(hi))
        if self.roll_jitter < 0:
            raise ConfigError(f"roll jitter must be >= 0 degrees, got {self.roll_jitter}")
        if not (0 <= self.strength_range[0] <= self.strength_range[1]):
            raise ConfigError(f"lighting strength range must satisfy 0 <= min <= max, got {self.strength_range}")
        # per emotion: sorted AUs, ranges, grid values
        self._aus: dict[str, list[str]] = {}
        self._ranges: dict[str, np.ndarray] = {}
        self._grid: dict[str, list[np.ndarray]] = {}
        for e in self.emotions:
            aus = sorted(preset.emotions[e].aus, key=au_sort_key)
            self._aus[e] = aus
            self._ranges[e] = np.array([preset.emotions[e].aus[a] for a in aus], dtype=np.float64).reshape(-1, 2)
            if config.sampling == "grid":
                self._grid[e] = [grid_values(lo, hi, int(config.grid_steps)) for lo, hi in self._ranges[e]]

    def __len__(self) -> int:
        return self.total

    def __iter__(self):
        for i in range(self.total):
            yield self[i]

    def emotion_of(self, i: int) -> tuple[str, int]:
        """(emotion, index within that emotion) of global sample i."""
        k = bisect.bisect_right(self.offsets, i) - 1
        while self.counts[self.emotions[k]] == 0 or i >= self.offsets[k] + self.counts[self.emotions[k]]:
            k += 1  # skip emotions with zero samples sharing the same offset
        return self.emotions[k], i - self.offsets[k]

    def global_index(self, emotion: str, j: int) -> int:
        """Global index of the ``j``-th sample of ``emotion``."""
        e = canonical_emotion(emotion)
        if e not in self.counts:
            raise ConfigError(f"emotion {e} is not part of this run (selected: {', '.join(self.emotions)})")
        n = self.counts[e]
        if not 0 <= int(j) < n:
            raise ConfigError(f"{e} has {n} samples in this run; index {j} is out of range")
        return self.offsets[self.emotions.index(e)] + int(j)

    def expression_aus(self, emotion: str, draw: int, key: int) -> dict[str, float]:
        aus = self._aus[emotion]
        if not aus:
            return {}
        if self.config.sampling == "grid":
            grids = self._grid[emotion]
            sizes = [len(g) for g in grids]
            flat = draw % int(np.prod(sizes))
            idx = np.unravel_index(flat, sizes)  # C order: last AU fastest, like itertools.product
            return {au: float(g[k]) for au, g, k in zip(aus, grids, idx)}
        rng = _rng(self.seed, key, STREAM_EXPRESSION)
        r = self._ranges[emotion]
        vals = np.round(rng.uniform(r[:, 0], r[:, 1]), 6)
        vals = np.clip(vals, r[:, 0], r[:, 1])
        return {au: float(v) for au, v in zip(aus, vals)}

    def __getitem__(self, i: int) -> Sample:
        i = int(i)
        if not 0 <= i < self.total:
            raise IndexError(f"sample {i} out of range (0..{self.total - 1})")
        emotion, j = self.emotion_of(i)
        draw, view = divmod(j, self.views)
        key = i - view  # first sample of this expression draw
        aus = self.expression_aus(emotion, draw, key)
        identity_seed = int(np.random.SeedSequence([self.seed, key, STREAM_IDENTITY]).generate_state(1)[0] >> 1)
        roll = float((2.0 * _rng(self.seed, i, STREAM_SAMPLE).random() - 1.0) * self.roll_jitter)
        hdri, rotation, strength = self.lighting(key)
        return Sample(
            index=i,
            sample_id=sample_id(i),
            emotion=emotion,
            expression=key,
            draw=draw,
            view=view,
            aus=aus,
            identity_seed=identity_seed,
            roll=round(roll, 9),
            hdri=hdri,
            hdri_rotation=rotation,
            hdri_strength=strength,
        )

    def lighting(self, key: int) -> tuple[str | None, float, float]:
        """(HDRI name, rotation in degrees, strength) of the expression draw whose first sample is ``key``."""
        u = _rng(self.seed, key, STREAM_LIGHTING).random(3)
        hdri = self.hdris[min(int(u[0] * len(self.hdris)), len(self.hdris) - 1)] if self.hdris else None
        lo, hi = self.strength_range
        return hdri, round(float(u[1] * 360.0), 9), round(float(lo + u[2] * (hi - lo)), 9)

    def expression_key(self, i: int) -> int:
        """Index of the first sample of the expression draw that sample ``i`` belongs to."""
        _emotion, j = self.emotion_of(int(i))
        return int(i) - j % self.views

    def draw_ordinal(self, i: int) -> int:
        """Number of sample ``i``'s expression draw counted over the whole run (0, 1, ...)."""
        emotion, j = self.emotion_of(int(i))
        before = 0
        for e in self.emotions:
            if e == emotion:
                break
            before += -(-self.counts[e] // self.views)
        return before + j // self.views

    def shard_indices(self, shard: tuple[int, int] | None = None) -> list[int]:
        """Indices of the samples of shard K/N: the expression draws whose run-wide number
        ``d`` has ``d % N == K``, every view of a draw in the same shard (so a shard poses
        the character once per draw, like a single run)."""
        k, n = shard if shard is not None else self.config.shard
        if not (isinstance(n, int) and isinstance(k, int)) or n < 1 or not 0 <= k < n:
            raise ConfigError(f"shard must be K/N with 0 <= K < N, got {k}/{n}")
        if n == 1:
            return list(range(self.total))
        out: list[int] = []
        d = 0
        for e, off in zip(self.emotions, self.offsets):
            for start in range(0, self.counts[e], self.views):
                if d % n == k:
                    out.extend(range(off + start, off + min(start + self.views, self.counts[e])))
                d += 1
        return out

    def render_order(self, indices, window: int = 256) -> list[int]:
        """``indices`` in the order to render them when a change of studio HDRI is the
        expensive change (the lighting's rotation and strength are not: see
        ``pipeline.render_setup.CharacterTurntable``): expression draws stay whole, in index
        order, and within each run of ``window`` consecutive draws the draws that use the same
        HDRI are rendered one after another (HDRIs in name order, reversed every other window
        so that a window starts with the HDRI the previous one ended with). Which samples are
        rendered, and what each contains, does not change; only the order does."""
        groups: list[list[int]] = []
        keys: list[int] = []
        for i in indices:
            key = self.expression_key(i)
            if not keys or key != keys[-1]:
                groups.append([])
                keys.append(key)
            groups[-1].append(int(i))
        if len(self.hdris) < 2 or window < 2:
            return [i for g in groups for i in g]
        rank = {h: r for r, h in enumerate(self.hdris)}
        out: list[int] = []
        for w, start in enumerate(range(0, len(groups), window)):
            chunk = groups[start:start + window]
            ranks = [rank[self.lighting(key)[0]] for key in keys[start:start + window]]
            sign = -1 if w % 2 else 1
            order = sorted(range(len(chunk)), key=lambda c: (sign * ranks[c], c))
            for c in order:
                out.extend(chunk[c])
        return out

    def describe(self) -> str:
        parts = ", ".join(f"{e} {n}" for e, n in self.counts.items())
        return f"{self.total} samples ({parts}); {self.views} views per expression; sampling {self.config.sampling}"


def build_plan(config: GenerationConfig, preset: Preset, views: int | None = None, hdris=()) -> SamplePlan:
    return SamplePlan(config, preset, views=views, hdris=hdris)
