# SPDX-License-Identifier: GPL-3.0-or-later
"""The sample plan (bpy-free): counts, order, determinism, grid, shards."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from facs_dataset_generator.core import config as cfg
from facs_dataset_generator.core.sampling import SamplePlan, emotion_counts, grid_size, grid_values, sample_id


def _conf(**kw) -> cfg.GenerationConfig:
    cam = kw.pop("camera", {})
    lig = kw.pop("lighting", {})
    c = cfg.GenerationConfig(**kw)
    for k, v in cam.items():
        setattr(c.camera, k, v)
    for k, v in lig.items():
        setattr(c.lighting, k, v)
    return c


@pytest.fixture(scope="module")
def emfacs():
    return cfg.load_preset("emfacs")


def test_bundled_presets_as_the_issue_describes():
    em = cfg.load_preset("emfacs")
    aus = {e: set(s.aus) for e, s in em.emotions.items()}
    assert aus["Joy"] == {"AU06", "AU12"}
    assert aus["Sadness"] == {"AU01", "AU04", "AU15"}
    assert aus["Surprise"] == {"AU01", "AU02", "AU05", "AU26"}
    assert aus["Fear"] == {"AU01", "AU02", "AU04", "AU05", "AU07", "AU20", "AU26"}
    assert aus["Anger"] == {"AU04", "AU05", "AU07", "AU23"}
    assert aus["Disgust"] == {"AU09", "AU15", "AU16"}
    assert aus["Contempt"] == {"AU12_R", "AU14_R"}  # unilateral
    assert aus["Neutral"] == set()
    orig = cfg.load_preset("original_script")
    # slider units / 0.377
    assert orig.emotions["Joy"].aus["AU06"] == pytest.approx((0.226 / 0.377, 1.0), abs=1e-6)
    assert orig.emotions["Fear"].aus["AU04"] == pytest.approx((0.075 / 0.377, 0.189 / 0.377), abs=1e-6)
    assert orig.emotions["Anger"].aus["AU24"] == pytest.approx((0.151 / 0.377, 0.264 / 0.377), abs=1e-6)
    assert set(orig.emotions["Disgust"].aus) == {"AU09", "AU10", "AU17"}
    assert set(orig.emotions["Contempt"].aus) == {"AU12", "AU14"}
    assert orig.emotions["Neutral"].aus == {}
    assert set(orig.emotions) == set(cfg.EMOTIONS) == set(em.emotions)


def test_count_splits_evenly_remainder_to_first_listed(emfacs):
    c = _conf(count=11, emotions=("Fear", "Joy", "Anger"))
    assert emotion_counts(c, emfacs) == {"Fear": 4, "Joy": 4, "Anger": 3}
    c = _conf(count=2, emotions=("Fear", "Joy", "Anger"))
    assert emotion_counts(c, emfacs) == {"Fear": 1, "Joy": 1, "Anger": 0}


def test_explicit_counts_and_weights(emfacs):
    c = _conf(count=10, emotions=("Joy", "Sadness", "Anger"), emotion_counts={"Joy": 4},
              emotion_weights={"Sadness": 2.0, "Anger": 1.0})
    assert emotion_counts(c, emfacs) == {"Joy": 4, "Sadness": 4, "Anger": 2}
    c = _conf(count=1, emotions=("Joy", "Sadness"), emotion_counts={"Joy": 3, "Sadness": 5})
    assert emotion_counts(c, emfacs) == {"Joy": 3, "Sadness": 5}  # all explicit: count unused


@pytest.mark.parametrize("kw, msg", [
    (dict(count=3, emotions=("Joy", "Sadness"), emotion_counts={"Joy": 5}), "exceed the total"),
    (dict(count=3, emotions=("Joy",), emotion_counts={"Anger": 1}), "not among the selected"),
    (dict(count=3, emotions=("Joy", "Joy")), "listed twice"),
    (dict(count=3, emotions=("Happy",)), "unknown emotion"),
    (dict(count=3, emotions=("Joy",), emotion_weights={"Joy": -1}), ">= 0"),
    (dict(count=0, emotions=("Joy",)), "nothing to generate"),
])
def test_count_errors(emfacs, kw, msg):
    with pytest.raises(cfg.ConfigError, match=msg):
        emotion_counts(_conf(**kw), emfacs)


def test_emotion_missing_from_preset():
    p = cfg.preset_from_dict({"emotions": {"Joy": {"AU12": [0.2, 0.4]}}}, "mini")
    with pytest.raises(cfg.ConfigError, match="Anger.*not in preset"):
        SamplePlan(_conf(count=2, emotions=("Joy", "Anger")), p)


def test_bad_preset_object_is_rejected():
    p = cfg.Preset("hand-made", {"Joy": cfg.EmotionSpec("Joy", {"AU12": (0.8, 0.2)})})
    with pytest.raises(cfg.ConfigError, match="min 0.8 > max 0.2"):
        SamplePlan(_conf(count=2, emotions=("Joy",)), p)
    p = cfg.Preset("hand-made", {"Joy": cfg.EmotionSpec("Joy", {"AU12": (0.1, 1.5)})})
    with pytest.raises(cfg.ConfigError, match=r"\[0, 1\]"):
        SamplePlan(_conf(count=2, emotions=("Joy",)), p)
    p = cfg.Preset("hand-made", {"Joy": cfg.EmotionSpec("Joy", {"AU99": (0.1, 0.5)})})
    with pytest.raises(cfg.ConfigError, match="AU99"):
        SamplePlan(_conf(count=2, emotions=("Joy",)), p)


def test_order_is_expression_major_camera_minor(emfacs):
    plan = SamplePlan(_conf(count=14, seed=3, emotions=("Joy", "Anger"), camera={"views": 3}), emfacs)
    assert plan.counts == {"Joy": 7, "Anger": 7}
    s = [plan[i] for i in range(len(plan))]
    assert [x.emotion for x in s] == ["Joy"] * 7 + ["Anger"] * 7
    assert [x.view for x in s] == [0, 1, 2, 0, 1, 2, 0] * 2
    assert [x.expression for x in s] == [0, 0, 0, 3, 3, 3, 6, 7, 7, 7, 10, 10, 10, 13]
    for a, b in zip(s, s[1:]):
        same = a.expression == b.expression
        assert (a.aus == b.aus) == same
        assert (a.identity_seed == b.identity_seed) == same
        assert ((a.hdri, a.hdri_rotation, a.hdri_strength) == (b.hdri, b.hdri_rotation, b.hdri_strength)) or not same
    assert set(s[0].aus) == {"AU06", "AU12"} and set(s[7].aus) == {"AU04", "AU05", "AU07", "AU23"}
    assert [x.sample_id for x in s[:2]] == ["000000", "000001"]
    assert sample_id(1234567) == "1234567"


def test_random_values_in_range_and_exact(emfacs):
    plan = SamplePlan(_conf(count=200, seed=1, emotions=("Fear",), camera={"views": 1, "roll_jitter": 5.0},
                            lighting={"strength_range": (0.5, 2.0)}), emfacs, hdris=["a", "b", "c"])
    vals = {au: [] for au in emfacs.emotions["Fear"].aus}
    for smp in plan:
        for au, v in smp.aus.items():
            lo, hi = emfacs.emotions["Fear"].aus[au]
            assert lo <= v <= hi
            assert v == round(v, 6)
            vals[au].append(v)
        assert -5.0 <= smp.roll <= 5.0
        assert smp.hdri in ("a", "b", "c")
        assert 0.5 <= smp.hdri_strength <= 2.0
        assert 0.0 <= smp.hdri_rotation < 360.0
    for au, v in vals.items():  # spread over the range, not constant
        lo, hi = emfacs.emotions["Fear"].aus[au]
        assert np.ptp(v) > 0.8 * (hi - lo)
    assert len({s.hdri for s in plan}) == 3


def test_determinism_depends_only_on_seed_and_index(emfacs):
    c1 = _conf(count=30, seed=7, emotions=("Joy", "Surprise", "Neutral"), camera={"views": 4, "roll_jitter": 3})
    a = SamplePlan(c1, emfacs, hdris=["x", "y"])
    b = SamplePlan(c1, emfacs, hdris=["x", "y"])
    assert [a[i] for i in range(30)] == [b[i] for i in reversed(range(30))][::-1]
    assert a[17] == b[17]
    c = SamplePlan(_conf(count=30, seed=8, emotions=("Joy", "Surprise", "Neutral"), camera={"views": 4}), emfacs)
    assert any(a[i].aus != c[i].aus for i in range(30) if a[i].aus)
    # a shard sees exactly the samples of the full plan
    shard = SamplePlan(_conf(count=30, seed=7, emotions=("Joy", "Surprise", "Neutral"), shard=(1, 3),
                             camera={"views": 4, "roll_jitter": 3}), emfacs, hdris=["x", "y"])
    # 10 samples per emotion, 4 views: draws [0-3] [4-7] [8-9] per emotion; shard 1/3 = draws 1, 4, 7
    assert list(shard.shard_indices()) == [4, 5, 6, 7, 14, 15, 16, 17, 24, 25, 26, 27]
    assert all(shard[i] == a[i] for i in shard.shard_indices())
    # neutral samples have no AUs
    assert all(a[i].aus == {} for i in range(20, 30))


def test_shards_partition_the_plan(emfacs):
    plan = SamplePlan(_conf(count=23, emotions=("Joy", "Anger")), emfacs)
    parts = [set(plan.shard_indices((k, 4))) for k in range(4)]
    assert set().union(*parts) == set(range(23))
    assert sum(len(p) for p in parts) == 23
    with pytest.raises(cfg.ConfigError):
        plan.shard_indices((4, 4))


def test_shards_keep_expression_draws_whole_and_balanced(emfacs):
    """Every view of an expression draw lands in the same shard (a shard poses the character
    once per draw), and shards differ by at most one draw."""
    plan = SamplePlan(_conf(count=61, emotions=("Joy", "Anger", "Fear"), camera={"views": 4}), emfacs)
    n = 3
    owner = {}
    for k in range(n):
        for i in plan.shard_indices((k, n)):
            assert i not in owner
            owner[i] = k
    assert sorted(owner) == list(range(61))
    by_draw = {}
    for i, k in owner.items():
        by_draw.setdefault(plan.expression_key(i), set()).add(k)
    assert all(len(ks) == 1 for ks in by_draw.values())
    draws = [sum(1 for ks in by_draw.values() if k in ks) for k in range(n)]
    assert max(draws) - min(draws) <= 1
    assert sorted(plan.draw_ordinal(key) for key in by_draw) == list(range(len(by_draw)))
    assert list(plan.shard_indices((0, 1))) == list(range(61))


def _hdri_changes(plan, order):
    names = [plan[i].hdri for i in order]
    return sum(a != b for a, b in zip(names, names[1:]))


def test_render_order_groups_hdris_without_changing_samples(emfacs):
    hdris = [f"h{k}" for k in range(8)]
    plan = SamplePlan(_conf(count=400, seed=5, emotions=("Joy", "Anger", "Fear", "Neutral"), camera={"views": 4}),
                      emfacs, hdris=hdris)
    ids = list(range(400))
    order = plan.render_order(ids, window=16)
    assert sorted(order) == ids  # a permutation: nothing lost, nothing twice
    # expression draws stay whole, views in order
    pos = {i: p for p, i in enumerate(order)}
    for i in ids:
        if plan[i].view > 0:
            assert pos[i] == pos[i - 1] + 1
    # 100 draws of 4 views in windows of 16 draws (64 samples): one HDRI change per HDRI
    # a window uses, at most (random order: about one per draw)
    segments = [[plan[i].hdri for i in order[k:k + 64]] for k in range(0, 400, 64)]
    assert _hdri_changes(plan, order) <= sum(len(set(seg)) for seg in segments) - 1
    assert _hdri_changes(plan, order) < _hdri_changes(plan, ids) / 2
    w0 = [plan[i].hdri for i in order[:64]]
    assert w0 == sorted(w0)  # first window ascending
    w1 = [plan[i].hdri for i in order[64:128]]
    assert w1 == sorted(w1, reverse=True)  # second window descending
    # resumed run: only the pending samples, same rules
    pending = [i for i in ids if i % 7]
    assert sorted(plan.render_order(pending, window=16)) == pending
    # no HDRIs, one HDRI or window 1: index order
    assert plan.render_order(ids, window=1) == ids
    assert SamplePlan(plan.config, emfacs, hdris=["only"]).render_order(ids) == ids
    assert SamplePlan(plan.config, emfacs).render_order(ids) == ids


def test_grid_is_the_full_product(emfacs):
    steps = 3
    c = _conf(count=9 * 2, emotions=("Joy",), sampling="grid", grid_steps=steps, camera={"views": 2})
    plan = SamplePlan(c, emfacs)
    assert grid_size(emfacs, "Joy", steps) == 9
    combos = [tuple(plan[i].aus[a] for a in ("AU06", "AU12")) for i in range(0, 18, 2)]
    lo6, hi6 = emfacs.emotions["Joy"].aus["AU06"]
    lo12, hi12 = emfacs.emotions["Joy"].aus["AU12"]
    expect = list(itertools.product(np.round(np.linspace(lo6, hi6, 3), 6), np.round(np.linspace(lo12, hi12, 3), 6)))
    assert combos == [tuple(map(float, e)) for e in expect]
    assert plan[1].aus == plan[0].aus  # second view of the same draw
    # cycling past the product
    plan2 = SamplePlan(_conf(count=20, emotions=("Joy",), sampling="grid", grid_steps=3, camera={"views": 2}), emfacs)
    assert plan2[18].aus == plan2[0].aus
    assert list(grid_values(0.2, 0.4, 1)) == [0.3]
    assert list(grid_values(0.0, 1.0, 3)) == [0.0, 0.5, 1.0]


def test_global_index_and_describe(emfacs):
    plan = SamplePlan(_conf(count=9, emotions=("Joy", "Anger", "Fear")), emfacs)
    assert plan.global_index("anger", 0) == 3
    assert plan.global_index("Fear", 2) == 8
    with pytest.raises(cfg.ConfigError, match="out of range"):
        plan.global_index("Fear", 3)
    with pytest.raises(cfg.ConfigError, match="not part of this run"):
        plan.global_index("Sadness", 0)
    assert "9 samples" in plan.describe()
    json.dumps(plan.counts)


def test_zero_count_emotions_are_skipped(emfacs):
    plan = SamplePlan(_conf(count=1, emotions=("Joy", "Anger", "Fear")), emfacs)
    assert [plan[i].emotion for i in range(len(plan))] == ["Joy"]
    plan = SamplePlan(_conf(count=4, emotions=("Joy", "Anger", "Fear"), emotion_counts={"Joy": 0, "Anger": 0}),
                      emfacs)
    assert [plan[i].emotion for i in range(len(plan))] == ["Fear"] * 4
