# SPDX-License-Identifier: GPL-3.0-or-later
"""Check a generated dataset against an independent detector: MediaPipe Face Mesh.

Runs ``mediapipe.solutions.face_mesh.FaceMesh(static_image_mode=True,
refine_landmarks=True)`` (mediapipe 0.10.14; first 468 points; pixels = normalised x *
width, y * height) on every image of a dataset written by ``facsgen generate`` and
compares with the CSV labels. Prints:

* detection rate, overall and per |yaw| bin (the CSV's yaw);
* landmark error / IOD (IOD = ||p33 - p263|| of the labels) over the landmarks flagged
  visible: mean / median / p95, overall, per |yaw| bin and per emotion, for the labels as
  written and for y-flipped and x-flipped labels (a y-up or mirrored bug; these must be
  far worse, which proves the comparison bites);
* the 2D similarity that maps labels onto detections (scale ~ 1 and a shift of a pixel or
  less rule out resolution-percentage / principal-point / sensor-fit errors);
* a visibility audit (``core.qa.visibility_audit``): hidden landmarks inside the image
  must be on the far side, grazing, or on the lips; and MediaPipe's own depth (z) on the
  far-side ones;
* head-pose signs on the detections: CSV yaw vs the nose tip's horizontal offset (must be
  strongly negative: yaw > 0 turns the face to the image's left), pitch vs the nose tip's
  drop below the eyes (negative: pitch > 0 = looking up), roll vs the eye line's angle
  (~ +1: roll > 0 = clockwise tilt; with ``--generate`` the camera roll jitter is 10 deg);
* AU agreement: per AU with a geometric proxy (``core.au_proxies``), the correlation
  across samples between the label intensity and ``sign * proxy`` on the detections,
  next to the same correlation on the labels' own landmarks (the best it can be).

    /work/venv/bin/python benchmarks/dataset_vs_mediapipe.py DIR
    /work/venv/bin/python benchmarks/dataset_vs_mediapipe.py --generate 24 [--res 384]
        [--yaw-range -45,45] [--views 3] [--samples 16] [--seed 0] [--roll-jitter 10] [--out DIR]

``compare(out)`` returns the figures as a dict (used by ``tests/test_dataset_mediapipe.py``).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import import_pkg

ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- dataset


def load_labels(out):
    """All samples' rows (pandas): index.csv, else the per-sample CSVs."""
    import pandas as pd

    out = Path(out)
    if (out / "index.csv").is_file():
        df = pd.read_csv(out / "index.csv", dtype={"sample_id": str})
    else:
        files = sorted((out / "annotations").glob("*.csv"))
        if not files:
            raise SystemExit(f"{out}: no index.csv and no annotations/*.csv: not a dataset")
        df = pd.concat([pd.read_csv(f, dtype={"sample_id": str}) for f in files], ignore_index=True)
    return df.sort_values("sample_id").reset_index(drop=True)


def generate_dataset(out, count, res=384, yaw_range=(-45.0, 45.0), pitch_range=(-15.0, 20.0), views=3,
                     samples=16, seed=0, emotions=None, percentage=100, extra=(), timeout=None):
    """Run ``facsgen generate`` in a subprocess (the built-in head); returns the CompletedProcess."""
    res_s = f"{res[0]}x{res[1]}" if isinstance(res, (tuple, list)) else str(res)
    cmd = [sys.executable, "-m", "facs_dataset_generator.cli", "generate", "--out", str(out),
           "--count", str(count), "--views", str(views),
           f"--yaw-range={yaw_range[0]:g},{yaw_range[1]:g}", f"--pitch-range={pitch_range[0]:g},{pitch_range[1]:g}",
           "--resolution", res_s, "--resolution-percentage", str(percentage), "--samples", str(samples),
           "--seed", str(seed), "--device", "cpu", *extra]
    if emotions:
        cmd += ["--emotions", ",".join(emotions)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# --------------------------------------------------------------------------- detector

_FACE_MESH = None


def face_mesh():
    global _FACE_MESH
    if _FACE_MESH is None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp

        _FACE_MESH = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True)
    return _FACE_MESH


def read_rgb(path) -> np.ndarray:
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return np.ascontiguousarray(img[:, :, ::-1])


def detect(rgb: np.ndarray) -> np.ndarray | None:
    """(468, 3): pixels x, y (x right, y down, origin top-left) and MediaPipe's relative
    depth z * width (smaller = nearer the camera); None when no face is found."""
    res = face_mesh().process(rgb)
    if not res.multi_face_landmarks:
        return None
    h, w = rgb.shape[:2]
    lm = res.multi_face_landmarks[0].landmark
    return np.array([[p.x * w, p.y * h, p.z * w] for p in lm[:468]], dtype=np.float64)


# --------------------------------------------------------------------------- comparison


def compare(out, df=None) -> dict:
    """Detect every image of the dataset at ``out`` and compare it with the labels."""
    import_pkg()
    from facs_dataset_generator.core import qa

    out = Path(out)
    df = load_labels(out) if df is None else df
    lab = qa.label_arrays(df)
    n = len(df)
    dets, sizes = [], []
    for img in df["image"]:
        rgb = read_rgb(out / img)
        sizes.append(rgb.shape[1::-1])
        dets.append(detect(rgb))
    found = np.array([d is not None for d in dets])
    yaw_bins = [qa.yaw_bin(y) for y in lab["yaw"]]
    emotions = df["emotion"].astype(str).tolist()

    variants = {"labels": lab["xy"]}
    variants["y-flipped"] = np.stack([qa.flip_labels(lab["xy"][i], lab["width"][i], lab["height"][i], "y")
                                      for i in range(n)]) if n else lab["xy"]
    variants["x-flipped"] = np.stack([qa.flip_labels(lab["xy"][i], lab["width"][i], lab["height"][i], "x")
                                      for i in range(n)]) if n else lab["xy"]
    errors = {}  # variant -> list per sample of (visible,) error arrays (None if not found)
    for name, xy in variants.items():
        per = []
        for i in range(n):
            if dets[i] is None:
                per.append(None)
                continue
            e = qa.landmark_errors(xy[i], dets[i][:, :2], scale=qa.iod(lab["xy"][i]))
            per.append(e[lab["visible"][i]])
        errors[name] = per

    def pooled(name, keys=None, key=None):
        sel = [e for i, e in enumerate(errors[name]) if e is not None and (keys is None or keys[i] == key)]
        return qa.error_stats(np.concatenate(sel) if sel else [])

    report = {
        "n": n,
        "found": found,
        "detection_rate": float(found.mean()) if n else math.nan,
        "size_mismatch": [df["sample_id"][i] for i in range(n)
                          if tuple(sizes[i]) != (int(lab["width"][i]), int(lab["height"][i]))],
        "per_sample_mean": {name: [float(e.mean()) if e is not None and e.size else math.nan for e in per]
                            for name, per in errors.items()},
        "overall": {name: pooled(name) for name in variants},
        "yaw_bins": {}, "emotions": {},
    }
    for b in sorted(set(yaw_bins), key=lambda s: float(s.split("-")[0].rstrip("+"))):
        m = [yb == b for yb in yaw_bins]
        report["yaw_bins"][b] = {"n": int(sum(m)), "found": int(found[m].sum()),
                                 **{name: pooled(name, yaw_bins, b) for name in variants}}
    for emo in dict.fromkeys(emotions):
        m = [e == emo for e in emotions]
        report["emotions"][emo] = {"n": int(sum(m)), "found": int(found[m].sum()),
                                   **{name: pooled(name, emotions, emo) for name in variants}}

    # systematic offsets: similarity fit labels -> detections over visible landmarks
    fits = [qa.similarity_fit(lab["xy"][i][lab["visible"][i]], dets[i][lab["visible"][i], :2])
            for i in range(n) if dets[i] is not None]
    report["fit"] = {k: float(np.median([f[k] for f in fits])) if fits else math.nan
                     for k in ("scale", "rotation_deg", "shift_x", "shift_y", "rms")}
    report["fit_per_sample"] = fits

    # expression specificity: own labels vs other expressions' labels seen from the same camera
    cam_keys = [f"{x:.4f},{y:.4f},{z:.4f}" for x, y, z in zip(df["cam_x"], df["cam_y"], df["cam_z"])]
    report["specificity"] = qa.expression_specificity(lab["xy"], lab["visible"], dets, cam_keys)

    # visibility
    mirror = qa.mirror_partners()
    audits = [qa.visibility_audit(lab["xy"][i], lab["depth"][i], lab["visible"][i], lab["K"][i],
                                  lab["width"][i], lab["height"][i]) for i in range(n)]
    vis_rep = {k: int(sum(a[k].sum() for a in audits)) for k in
               ("hidden_inside", "unexplained", "near_facing_hidden", "far_away_visible", "outside_visible")}
    vis_rep["hidden_outside"] = int(sum((~a["inside"] & ~lab["visible"][i]).sum() for i, a in enumerate(audits)))
    vis_rep["hidden_far"] = int(sum((a["hidden_inside"] & a["far"]).sum() for a in audits))
    vis_rep["hidden_grazing_not_far"] = int(sum((a["hidden_inside"] & a["grazing"] & ~a["far"]).sum() for a in audits))
    vis_rep["hidden_lips_only"] = int(sum((a["hidden_inside"] & a["lips"] & ~a["grazing"] & ~a["far"]).sum()
                                          for a in audits))
    vis_rep["visible"] = int(lab["visible"].sum())
    vis_rep["unexplained_list"] = [(df["sample_id"][i], np.where(a["unexplained"])[0].tolist())
                                   for i, a in enumerate(audits) if a["unexplained"].any()]
    # MediaPipe's own depth: is a far-side hidden landmark deeper than its mirror partner?
    agree = total = 0
    hid_err, vis_err = [], []
    for i, a in enumerate(audits):
        if dets[i] is None:
            continue
        z = dets[i][:, 2]
        m = a["hidden_inside"] & a["far"] & (np.abs(a["far_m"]) > qa.CLEAR_FAR_M)
        agree += int((z[m] > z[mirror[m]]).sum())
        total += int(m.sum())
        e = qa.landmark_errors(lab["xy"][i], dets[i][:, :2])
        hid_err.append(e[a["hidden_inside"]])
        vis_err.append(e[lab["visible"][i]])
    vis_rep["mediapipe_far_agree"] = (agree, total)
    vis_rep["err_hidden_inside"] = qa.error_stats(np.concatenate(hid_err) if hid_err else [])
    vis_rep["err_visible"] = qa.error_stats(np.concatenate(vis_err) if vis_err else [])
    report["visibility"] = vis_rep
    report["audits"] = audits

    # yaw sign
    idx = np.where(found)[0]
    report["yaw_nose_r"] = qa.pearson(lab["yaw"][idx], [qa.nose_offset(dets[i][:, :2]) for i in idx])
    report["yaw_nose_r_labels"] = qa.pearson(lab["yaw"], [qa.nose_offset(lab["xy"][i]) for i in range(n)])
    pitch, roll = df["pitch"].to_numpy(float), df["roll"].to_numpy(float)
    report["pitch_nose_r"] = qa.pearson(pitch[idx], [qa.nose_drop(dets[i][:, :2]) for i in idx])
    report["pitch_nose_r_labels"] = qa.pearson(pitch, [qa.nose_drop(lab["xy"][i]) for i in range(n)])
    ang = np.array([qa.eye_line_angle(dets[i][:, :2]) for i in idx])
    near = np.abs(lab["yaw"][idx]) <= 30.0  # the eye line's angle tracks roll only near frontal
    report["roll"] = {"r": qa.pearson(roll[idx][near], ang[near]), "n": int(near.sum()),
                      "range": (float(roll.min()), float(roll.max())) if n else (math.nan, math.nan),
                      "mean_abs_diff": float(np.mean(np.abs(ang[near] - roll[idx][near]))) if near.any() else math.nan}

    # AU agreement
    from facs_dataset_generator.core import au_proxies

    au_cols = [c for c in df.columns if c.startswith("AU") and c in au_proxies.PROXIES]
    au_labels = {c: df[c].to_numpy(np.float64) for c in au_cols}
    report["au_det"] = qa.au_agreement(au_labels, [d[:, :2] if d is not None else None for d in dets])
    report["au_labels"] = qa.au_agreement(au_labels, list(lab["xy"]))
    # the same proxy on detections and on the labels' landmarks, sample by sample
    report["au_det_vs_labels"] = {
        au: qa.pearson([au_proxies.proxy(au, dets[i][:, :2]) for i in idx],
                       [au_proxies.proxy(au, lab["xy"][i]) for i in idx]) for au in report["au_det"]}
    report["detections"] = dets
    return report


# --------------------------------------------------------------------------- printing


def _fmt(s: dict) -> str:
    if not s["n"]:
        return f"{'-':>7} {'-':>7} {'-':>7}"
    return f"{s['mean']:7.4f} {s['median']:7.4f} {s['p95']:7.4f}"


def print_report(r: dict, out=sys.stdout) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    names = ("labels", "y-flipped", "x-flipped")
    p(f"samples: {r['n']}   face found: {int(r['found'].sum())}/{r['n']} "
      f"(detection rate {r['detection_rate']:.3f})")
    if r["size_mismatch"]:
        p(f"IMAGE SIZE != CSV width/height for: {', '.join(r['size_mismatch'][:10])}")
    p("\nlandmark error / IOD over visible landmarks (pooled): mean median p95")
    hdr = f"{'':>16} {'n':>3} {'found':>5}  " + "  ".join(f"{nm + ' (mean med p95)':^26}" for nm in names)
    p(hdr)
    p(f"{'all':>16} {r['n']:>3} {int(r['found'].sum()):>5}  " + "  ".join(f"{_fmt(r['overall'][nm]):>26}" for nm in names))
    for title, key in (("|yaw| ", "yaw_bins"), ("", "emotions")):
        for k, v in r[key].items():
            p(f"{title + k:>16} {v['n']:>3} {v['found']:>5}  " + "  ".join(f"{_fmt(v[nm]):>26}" for nm in names))
    o = r["overall"]
    if o["labels"]["n"]:
        p(f"flipped / labels mean error: y-flip x{o['y-flipped']['mean'] / o['labels']['mean']:.1f}, "
          f"x-flip x{o['x-flipped']['mean'] / o['labels']['mean']:.1f}")
    f = r["fit"]
    p(f"\nsimilarity labels -> detections (median over samples): scale {f['scale']:.4f}, "
      f"rotation {f['rotation_deg']:+.2f} deg, mean shift ({f['shift_x']:+.2f}, {f['shift_y']:+.2f}) px, "
      f"residual RMS {f['rms']:.2f} px")
    sp = r["specificity"]
    if sp:
        wins = sum(own < other for _, own, other in sp)
        ratio = np.median([own / other for _, own, other in sp])
        p(f"\nexpression specificity (lips, brows, lids, chin; same camera): own labels fit best in {wins}/{len(sp)} "
          f"samples; median own/other error ratio {ratio:.2f} (own {np.mean([o for _, o, _ in sp]):.4f}, "
          f"other expressions {np.mean([x for _, _, x in sp]):.4f} IOD)")
    v = r["visibility"]
    n_lm = 468 * r["n"]
    p(f"\nvisibility: {v['visible']}/{n_lm} landmarks flagged visible; hidden: {v['hidden_outside']} outside "
      f"the image, {v['hidden_inside']} inside = {v['hidden_far']} far side + {v['hidden_grazing_not_far']} "
      f"grazing/back-facing + {v['hidden_lips_only']} on the lips (inner contour under closed lips) "
      f"+ {v['unexplained']} unexplained")
    a, t = v["mediapipe_far_agree"]
    p(f"  contradictions: near-side facing but hidden {v['near_facing_hidden']}, far-side facing away but "
      f"visible {v['far_away_visible']}, outside the image but visible {v['outside_visible']}")
    p(f"  MediaPipe's z puts {a}/{t} clearly far-side hidden landmarks deeper than their mirror partner")
    p(f"  MediaPipe error / IOD: visible {v['err_visible']['mean']:.4f} (median {v['err_visible']['median']:.4f}), "
      f"hidden in image {v['err_hidden_inside']['mean']:.4f} (median {v['err_hidden_inside']['median']:.4f})")
    for sid, lms in v["unexplained_list"][:5]:
        p(f"  unexplained hidden in {sid}: {lms}")
    p(f"\nyaw sign: corr(CSV yaw, nose-tip offset) on detections {r['yaw_nose_r']:+.3f} "
      f"(labels' own landmarks {r['yaw_nose_r_labels']:+.3f}; expected strongly negative)")
    p(f"pitch sign: corr(CSV pitch, nose-tip drop below the eyes) on detections {r['pitch_nose_r']:+.3f} "
      f"(labels' own landmarks {r['pitch_nose_r_labels']:+.3f}; expected negative)")
    ro = r["roll"]
    p(f"roll: CSV roll {ro['range'][0]:+.1f}..{ro['range'][1]:+.1f} deg; on the {ro['n']} views with |yaw| <= 30, "
      f"corr(roll, detected eye-line angle) {ro['r']:+.3f}, mean |angle - roll| {ro['mean_abs_diff']:.2f} deg "
      f"(expected r ~ +1 when roll varies)")
    p("\nAU agreement: corr(label intensity, sign * proxy) across samples")
    p("  (r det: on MediaPipe's detections; r labels: on the labels' own landmarks, the best a 2D proxy can do "
      "under pose changes; det~lab: proxy on detections vs on labels)")
    p(f"  {'AU':<7} {'n':>3} {'label range':>13} {'r det':>7} {'rho det':>8} {'r labels':>9} {'det~lab':>8}  proxy")
    from facs_dataset_generator.core import au_proxies

    for au, d in r["au_det"].items():
        ref = r["au_labels"][au]
        rng = f"{d['range'][0]:.2f}-{d['range'][1]:.2f}"
        if d["range"][0] == d["range"][1]:
            p(f"  {au:<7} {d['n']:>3} {rng:>13} {'(label constant)':>34}")
            continue
        p(f"  {au:<7} {d['n']:>3} {rng:>13} {d['r']:>+7.3f} {d['rho']:>+8.3f} {ref['r']:>+9.3f} "
          f"{r['au_det_vs_labels'][au]:>+8.3f}  {au_proxies.PROXIES[au].text}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="?", help="dataset folder (written by facsgen generate)")
    ap.add_argument("--generate", type=int, metavar="N", help="first generate N samples with the built-in head")
    ap.add_argument("--out", help="with --generate: dataset folder (default: a temporary folder)")
    ap.add_argument("--res", default="384", help="with --generate: N or WxH")
    ap.add_argument("--percentage", type=int, default=100, help="with --generate: resolution percentage")
    ap.add_argument("--yaw-range", default="-45,45")
    ap.add_argument("--pitch-range", default="-15,20")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--roll-jitter", type=float, default=10.0, help="with --generate: camera roll in [-DEG, DEG]")
    ap.add_argument("--emotions", default=None, help="with --generate: A,B,... (default: all)")
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):  # allow "--yaw-range -45,45" (argparse takes -45,45 for an option)
        if argv[i] in ("--yaw-range", "--pitch-range") and argv[i + 1].startswith("-"):
            argv[i:i + 2] = [f"{argv[i]}={argv[i + 1]}", ""]
    args = ap.parse_args([a for a in argv if a != ""])
    import_pkg()
    if (args.dir is None) == (args.generate is None):
        ap.error("give a dataset DIR or --generate N")
    if args.generate is not None:
        out = args.out or tempfile.mkdtemp(prefix="facsgen_mp_")  # kept, so that it can be inspected
        res = tuple(int(x) for x in args.res.lower().split("x")) if "x" in args.res.lower() else int(args.res)
        t0 = time.time()
        cp = generate_dataset(out, args.generate, res=res, yaw_range=[float(x) for x in args.yaw_range.split(",")],
                              pitch_range=[float(x) for x in args.pitch_range.split(",")], views=args.views,
                              samples=args.samples, seed=args.seed, percentage=args.percentage,
                              emotions=args.emotions.split(",") if args.emotions else None,
                              extra=("--quiet", "--roll-jitter", f"{args.roll_jitter:g}"))
        if cp.returncode != 0:
            print(cp.stdout[-2000:], cp.stderr[-4000:], file=sys.stderr)
            return 1
        print(f"generated {args.generate} samples in {out} ({time.time() - t0:.0f} s)")
    else:
        out = args.dir
    t0 = time.time()
    r = compare(out)
    print(f"dataset {out}: MediaPipe Face Mesh 0.10.14 on every image ({time.time() - t0:.1f} s)\n")
    print_report(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
