# SPDX-License-Identifier: GPL-3.0-or-later
"""bpy-free tests of presets and configuration validation."""

import json

import pytest

from facs_dataset_generator.core import config as cfg


@pytest.mark.parametrize(
    "name,expected",
    [("AU1", "AU01"), ("au12", "AU12"), ("AU12_L", "AU12_L"), ("12r", "AU12_R"), ("AU 4", "AU04"), ("AU43", "AU43")],
)
def test_canonical_au(name, expected):
    assert cfg.canonical_au(name) == expected


@pytest.mark.parametrize("bad", ["AU3", "AU99", "smile", "", "AU12_X"])
def test_canonical_au_rejects(bad):
    with pytest.raises(cfg.ConfigError) as exc:
        cfg.canonical_au(bad)
    assert repr(bad) in str(exc.value)


def test_canonical_emotion():
    assert cfg.canonical_emotion("joy") == "Joy"
    with pytest.raises(cfg.ConfigError, match="'Happiness'"):
        cfg.canonical_emotion("Happiness")


def _write(tmp_path, data, name="p.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


@pytest.mark.parametrize(
    "data,needle",
    [
        ("{not json", "not valid JSON"),
        ({"emotions": {"Joy": {"AU12": [0.8, 0.2]}}}, "min 0.8 > max 0.2"),
        ({"emotions": {"Joy": {"AU12": [0.2, 1.5]}}}, "must lie in [0, 1]"),
        ({"emotions": {"Joy": {"AU99": [0.2, 0.5]}}}, "AU99"),
        ({"emotions": {"Glee": {"AU12": [0.2, 0.5]}}}, "'Glee'"),
        ({"emotions": {"Joy": {"AU12": "high"}}}, "expected [min, max]"),
        ({"emotions": {"Joy": {"AU12": [0.1, 0.2], "AU12 ": [0.1, 0.2]}}}, "listed twice"),
        ({"name": "x"}, "missing 'emotions'"),
        ([1, 2], "top level"),
    ],
)
def test_bad_presets_name_the_problem(tmp_path, data, needle):
    p = _write(tmp_path, data)
    with pytest.raises(cfg.ConfigError) as exc:
        cfg.load_preset(p)
    assert needle in str(exc.value)
    assert str(p) in str(exc.value)


def test_unknown_preset_name():
    with pytest.raises(cfg.ConfigError, match="unknown preset 'nope'"):
        cfg.load_preset("nope")


def test_preset_round_trip(tmp_path):
    p = cfg.preset_from_dict(
        {"name": "t", "emotions": {"Joy": {"AU6": [0.1, 0.4], "AU12_L": 0.5}, "Neutral": {}}}
    )
    assert p.emotions["Joy"].aus == {"AU06": (0.1, 0.4), "AU12_L": (0.5, 0.5)}
    assert p.au_columns() == ["AU06", "AU12_L"]
    path = cfg.save_preset(p, tmp_path / "sub" / "t.json")
    q = cfg.load_preset(path)
    assert q.to_dict() == p.to_dict()


def test_generation_config_round_trip():
    c = cfg.GenerationConfig(out="x", count=5, emotions=("Joy", "Anger"))
    c.camera.yaw_range = (-10.0, 10.0)
    d = json.loads(json.dumps(c.to_dict()))
    assert cfg.GenerationConfig.from_dict(d) == c
