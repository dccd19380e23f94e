# SPDX-License-Identifier: GPL-3.0-or-later
"""The dataset on disk (bpy-free): layout, per-sample writers, index, resume, validation.

::

    OUT/dataset.json                  config, seed, versions, schema version, column docs, dropped AUs
    OUT/images/<sample_id>.png
    OUT/annotations/<sample_id>.csv   one header row + one data row
    OUT/index.csv, OUT/index.parquet  every sample's row, rebuilt from the per-sample CSVs

Crash safety: every file is written under a temporary name (``.<id>.tmp-<pid>.<ext>``, hidden)
and renamed into place. Per sample the image is committed first, the CSV last, so a sample
*exists* exactly when its CSV exists (and then its image exists too). On resume,
temporary files and images without a CSV of the samples being generated are deleted
(:func:`clean_partial`), and complete samples are skipped.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEMA_VERSION = "1.0"
N_LANDMARKS = 468
IMAGES = "images"
ANNOTATIONS = "annotations"
META = "dataset.json"
INDEX_CSV = "index.csv"
INDEX_PARQUET = "index.parquet"
TMP_TAG = ".tmp"

#: Keys of dataset.json's "config" that may differ between runs writing into the same
#: folder (shards of one dataset, a resumed run).
RUN_KEYS = ("out", "resume", "shard")

HEAD_COLUMNS = ("sample_id", "emotion", "image", "width", "height", "identity_seed")
POSE_COLUMNS = ("yaw", "pitch", "roll")
CAM_COLUMNS = ("cam_x", "cam_y", "cam_z")
K_COLUMNS = ("fx", "fy", "cx", "cy")
R_COLUMNS = tuple(f"r{i}{j}" for i in range(3) for j in range(3))
T_COLUMNS = ("tx", "ty", "tz")


def landmark_columns(n: int = N_LANDMARKS) -> list[str]:
    return [f"lm{i:03d}_{c}" for i in range(n) for c in ("x", "y", "depth", "visible")]


def columns(au_columns) -> list[str]:
    """Every column of the per-sample CSVs and the index, in order."""
    return [
        *HEAD_COLUMNS, *au_columns, *POSE_COLUMNS, *CAM_COLUMNS, *K_COLUMNS, *R_COLUMNS, *T_COLUMNS,
        *landmark_columns(),
    ]


def column_docs(au_columns) -> dict[str, str]:
    """Documentation of every column (dataset.json; the README's contract)."""
    docs = {
        "sample_id": "unique id of the sample (zero-padded global index i; the file stem)",
        "emotion": "emotion the AUs were drawn for (Joy, Sadness, Anger, Fear, Disgust, Surprise, Neutral, Contempt)",
        "image": "path of the PNG relative to the dataset folder",
        "width": "image width in pixels",
        "height": "image height in pixels",
        "identity_seed": "seed of the random identity/skin tone (built-in head), -1 when no identity was applied",
        "AUxx": "FACS action unit intensity in [0, 1] (1 = FACS E); 0 when inactive; _L/_R = subject's left/right "
                "side only",
        "yaw": "head yaw relative to the camera, degrees (300W-LP/6DRepNet: R = Rz(roll) Ry(yaw) Rx(pitch)); "
               "> 0: face turned towards the image's left",
        "pitch": "head pitch relative to the camera, degrees; > 0: face looking up",
        "roll": "head roll relative to the camera, degrees; > 0: head tilted clockwise in the image",
        "cam_x, cam_y, cam_z": "camera position in world coordinates (metres, Blender world: Z up)",
        "fx, fy, cx, cy": "intrinsics in pixels, origin at the image's top-left corner (pixel (0,0) centre = "
                          "(0.5, 0.5)); [u v 1]^T ~ K [R|t] X",
        "r00..r22": "OpenCV world-to-camera rotation R, row-major (camera x right, y down, z forward)",
        "tx, ty, tz": "OpenCV world-to-camera translation t (metres): X_cam = R X_world + t",
        "lmNNN_x, lmNNN_y": "MediaPipe Face Mesh landmark NNN in pixels (origin top-left corner, x right, y down)",
        "lmNNN_depth": "depth of landmark NNN along the camera axis, metres (= z of X_cam)",
        "lmNNN_visible": "1 if landmark NNN is not hidden by the head itself and lies inside the image, else 0",
    }
    docs["au_columns"] = ", ".join(au_columns)
    return docs


# --------------------------------------------------------------------------- row formatting


class RowFormatter:
    """Formats one sample's row as CSV text with a precomputed ``%`` format (fast: one
    C-level format call for ~1900 values)."""

    def __init__(self, au_columns):
        self.au_columns = list(au_columns)
        self.columns = columns(self.au_columns)
        self.header = ",".join(self.columns)
        lm = ",".join(["%.4f,%.4f,%.6f,%d"] * N_LANDMARKS)
        parts = ["%s,%s,%s,%d,%d,%d"]
        parts += ["%.6f"] * len(self.au_columns)
        parts += ["%.6f"] * 3 + ["%.9f"] * 3 + ["%.6f"] * 4 + ["%.12f"] * 9 + ["%.9f"] * 3
        self._fmt = ",".join(parts) + "," + lm

    def format(
        self, sample_id, emotion, image, width, height, identity_seed, aus, pose, cam, k, r, t, uv, depth, visible
    ) -> str:
        def f(x):  # float64, and -0.0 -> 0.0 so that formatting never prints "-0.000"
            return np.asarray(x, dtype=np.float64) + 0.0

        k = f(k)
        lm = np.column_stack([f(uv).reshape(-1, 2), f(depth), f(visible)])
        vals = (
            str(sample_id), str(emotion), str(image), int(width), int(height), int(identity_seed),
            *(float(aus.get(a, 0.0)) + 0.0 for a in self.au_columns),
            *f(pose).tolist(), *f(cam).tolist(),
            k[0, 0], k[1, 1], k[0, 2], k[1, 2],
            *f(r).ravel().tolist(), *f(t).ravel().tolist(),
            *lm.ravel().tolist(),
        )
        return self._fmt % vals


# --------------------------------------------------------------------------- paths & atomic writes


def image_path(out, sample_id: str) -> Path:
    return Path(out) / IMAGES / f"{sample_id}.png"


def csv_path(out, sample_id: str) -> Path:
    return Path(out) / ANNOTATIONS / f"{sample_id}.csv"


def tmp_path(final: Path) -> Path:
    """Temporary name of a file being written: hidden, unique per process (shards may
    write into one folder at once), keeps the extension (``.000012.tmp-4711.png``)."""
    final = Path(final)
    return final.with_name(f".{final.stem}{TMP_TAG}-{os.getpid()}{final.suffix}")


def is_tmp(name: str) -> bool:
    return name.startswith(".") and TMP_TAG in name


def _tmp_sample_id(name: str) -> str | None:
    if not is_tmp(name):
        return None
    return name[1:].split(TMP_TAG, 1)[0]


def atomic_write_text(path, text: str, durable: bool = False) -> Path:
    """Write to a temporary name, then rename (atomic against a killed process; with
    ``durable`` also fsync'ed against power loss)."""
    path = Path(path)
    tmp = tmp_path(path)
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    path = Path(path)
    tmp = tmp_path(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path


def ensure_layout(out) -> Path:
    out = Path(out)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    (out / ANNOTATIONS).mkdir(parents=True, exist_ok=True)
    return out


def commit_image(out, sample_id: str, rendered: Path) -> Path:
    """Rename a rendered temporary image into place."""
    final = image_path(out, sample_id)
    os.replace(rendered, final)
    return final


def write_annotation(out, sample_id: str, header: str, row: str) -> Path:
    """Write the sample's CSV atomically: this commits the sample (the image must exist)."""
    return atomic_write_text(csv_path(out, sample_id), header + "\n" + row + "\n")


# --------------------------------------------------------------------------- metadata


def write_metadata(out, meta: dict) -> Path:
    meta = dict(meta)
    meta.setdefault("schema_version", SCHEMA_VERSION)
    return atomic_write_text(Path(out) / META, json.dumps(meta, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (np.ndarray, tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_metadata(out) -> dict | None:
    p = Path(out) / META
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_independent_config(config: dict) -> dict:
    """The part of a config dict that defines the dataset (without out/resume/shard)."""
    c = json.loads(json.dumps(config, default=_json_default))
    for k in RUN_KEYS:
        c.pop(k, None)
    return c


# --------------------------------------------------------------------------- scanning, resume


@dataclass
class Scan:
    complete: set[str]  # CSV and image present
    csv_only: set[str]  # CSV without image (image deleted by hand)
    image_only: set[str]  # image without CSV (a run killed between the two renames)
    tmp_files: list[Path]  # temporary files left by a killed run


def scan(out) -> Scan:
    out = Path(out)
    csvs, imgs, tmps = set(), set(), []
    for sub, ext, bucket in ((ANNOTATIONS, ".csv", csvs), (IMAGES, ".png", imgs)):
        d = out / sub
        if not d.is_dir():
            continue
        with os.scandir(d) as it:
            for e in it:
                if is_tmp(e.name):
                    tmps.append(Path(e.path))
                elif e.name.endswith(ext) and not e.name.startswith("."):
                    bucket.add(e.name[: -len(ext)])
    return Scan(csvs & imgs, csvs - imgs, imgs - csvs, tmps)


def clean_partial(out, sample_ids=None) -> list[Path]:
    """Delete partial leftovers (temporary files, images without CSV, CSVs without image)
    of the given sample ids (None = of every sample). Returns the removed paths."""
    s = scan(out)
    ids = None if sample_ids is None else set(sample_ids)
    removed: list[Path] = []
    for p in s.tmp_files:
        sid = _tmp_sample_id(p.name)
        if ids is None or sid in ids:
            p.unlink(missing_ok=True)
            removed.append(p)
    for sid in s.image_only:
        if ids is None or sid in ids:
            image_path(out, sid).unlink(missing_ok=True)
            removed.append(image_path(out, sid))
    for sid in s.csv_only:
        if ids is None or sid in ids:
            csv_path(out, sid).unlink(missing_ok=True)
            removed.append(csv_path(out, sid))
    # index / metadata temporaries of processes that are gone
    top = Path(out)
    if top.is_dir():
        for p in top.iterdir():
            if is_tmp(p.name) and p.is_file() and not _pid_alive(_tmp_pid(p.name)):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _tmp_pid(name: str) -> int | None:
    try:
        return int(name.split(TMP_TAG + "-", 1)[1].split(".", 1)[0])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def count_samples(out) -> int:
    """Number of complete samples (CSV and image present) in ``out``."""
    return len(scan(out).complete)


# --------------------------------------------------------------------------- index


def _read_rows(out, sample_ids) -> tuple[str | None, list[str], list[str]]:
    """(header, data lines, problems) of the given per-sample CSVs."""
    header = None
    lines: list[str] = []
    problems: list[str] = []
    for sid in sample_ids:
        p = csv_path(out, sid)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{p.name}: cannot be read ({exc})")
            continue
        rows = [ln for ln in text.splitlines() if ln.strip()]
        if len(rows) != 2:
            problems.append(f"{p.name}: expected a header and one data row, found {len(rows)} lines")
            continue
        if header is None:
            header = rows[0]
        elif rows[0] != header:
            problems.append(f"{p.name}: header differs from the other annotation files")
            continue
        lines.append(rows[1])
    return header, lines, problems


def _frame(header: str, lines: list[str]):
    import pandas as pd

    text = header + "\n" + "\n".join(lines) + ("\n" if lines else "")
    return pd.read_csv(
        io.StringIO(text), dtype={"sample_id": str, "emotion": str, "image": str}, keep_default_na=False,
        na_values=[""], low_memory=False,
    )


TABLES_HINT = (
    "pandas and pyarrow are not installed in this Python (Blender does not ship them): "
    "install them into Blender's Python, or run `facsgen validate --rebuild-index DIR` from the "
    "pip-installed facsgen"
)


def have_tables() -> bool:
    """True when pandas + pyarrow can be imported (the bpy wheel's venv: yes; stock Blender: no)."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def _write_index_csv_plain(out: Path, header: str, lines: list[str]) -> None:
    """``index.csv`` without pandas: the per-sample data rows (already CSV text), sorted by
    sample_id (the first column); a stale ``index.parquet`` is removed."""
    rows = sorted(lines, key=lambda ln: ln.split(",", 1)[0])
    tmp_csv = tmp_path(out / INDEX_CSV)
    tmp_csv.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp_csv, out / INDEX_CSV)
    try:
        (out / INDEX_PARQUET).unlink()
    except FileNotFoundError:
        pass


def rebuild_index(out):
    """Rebuild ``index.csv`` and ``index.parquet`` from the per-sample CSVs (sorted by
    sample_id); returns the DataFrame (None when there is no sample, or when pandas/pyarrow
    are missing: then only ``index.csv`` is written, with the standard library)."""
    out = Path(out)
    s = scan(out)
    csv_ids = sorted(s.complete | s.csv_only)
    header, lines, _problems = _read_rows(out, csv_ids)
    if header is None:
        meta = read_metadata(out)
        cols = meta.get("columns") if meta else None
        if not cols:
            return None
        header = ",".join(cols)
    if not have_tables():
        _write_index_csv_plain(out, header, lines)
        print(f"facsgen: {INDEX_PARQUET} not written: {TABLES_HINT}")
        return None
    df = _frame(header, lines)
    df = df.sort_values("sample_id", kind="stable").reset_index(drop=True)
    tmp_csv = tmp_path(out / INDEX_CSV)
    df.to_csv(tmp_csv, index=False, float_format=None)
    os.replace(tmp_csv, out / INDEX_CSV)
    tmp_pq = tmp_path(out / INDEX_PARQUET)
    _write_parquet(df, tmp_pq)
    os.replace(tmp_pq, out / INDEX_PARQUET)
    return df


def _write_parquet(df, path) -> None:
    """Write ``df`` to ``path`` with pyarrow directly, from a path string (see
    :func:`read_parquet` for why not through pandas' file handles)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False, nthreads=1), str(path))


def read_index(out):
    import pandas as pd

    return pd.read_csv(Path(out) / INDEX_CSV, dtype={"sample_id": str, "emotion": str, "image": str},
                       keep_default_na=False, na_values=[""], low_memory=False)


def merge_datasets(sources, out) -> int:
    """Merge datasets (e.g. shards rendered into separate folders) into ``out``: files are
    hard-linked (copied across file systems), dataset.json must agree (apart from
    out/shard/resume), the index is rebuilt. Returns the number of samples in ``out``."""
    from .config import ConfigError

    out = Path(out)
    metas = []
    for src in sources:
        m = read_metadata(src)
        if m is None:
            raise ConfigError(f"{src}: no dataset.json (not a dataset folder)")
        metas.append(m)
    base = run_independent_config(metas[0].get("config", {}))
    for src, m in zip(sources, metas):
        if run_independent_config(m.get("config", {})) != base:
            raise ConfigError(f"{src}: generated with a different configuration than {sources[0]}; cannot merge")
    existing = read_metadata(out)
    if existing is not None and run_independent_config(existing.get("config", {})) != base:
        raise ConfigError(f"{out}: holds a dataset with a different configuration")
    ensure_layout(out)
    for src in sources:
        s = scan(src)
        for sid in sorted(s.complete):
            for f in (image_path, csv_path):
                dst = f(out, sid)
                if dst.exists():
                    continue
                tmp = tmp_path(dst)
                try:
                    os.link(f(src, sid), tmp)
                except OSError:
                    shutil.copyfile(f(src, sid), tmp)
                os.replace(tmp, dst)
    meta = dict(metas[0])
    meta["config"] = dict(meta.get("config", {}), shard=[0, 1], out=str(out))
    dropped = sorted({au for m in metas for au in m.get("dropped_aus", [])})
    meta["dropped_aus"] = dropped
    write_metadata(out, meta)
    rebuild_index(out)
    return count_samples(out)


# --------------------------------------------------------------------------- validation


def png_size(path) -> tuple[int, int] | None:
    """(width, height) from a PNG header, None if the file is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _au_columns(cols) -> list[str]:
    return [c for c in cols if c.startswith("AU") and len(c) >= 4 and c[2:4].isdigit()]


def validate_dataset(out) -> list[str]:
    """Check a dataset folder; returns the problems found (empty list = valid).

    Checks: dataset.json; every per-sample CSV parses, has the dataset's columns and its
    image; image sizes match width/height; every number parses and is finite; AUs in
    [0, 1]; visible flags 0/1 and visible landmarks inside the image; no duplicate
    sample ids; no partial or orphan files; index.csv / index.parquet hold exactly the
    per-sample rows."""
    if not have_tables():
        return [f"cannot validate {out}: {TABLES_HINT}"]
    import pandas as pd

    out = Path(out)
    problems: list[str] = []
    if not out.is_dir():
        return [f"{out}: not a folder"]
    meta = read_metadata(out)
    if meta is None:
        problems.append(f"{META} missing or not valid JSON")
        meta = {}
    elif str(meta.get("schema_version", "")).split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        problems.append(f"{META}: unsupported schema version {meta.get('schema_version')!r}")
    s = scan(out)
    for p in s.tmp_files:
        problems.append(f"partial file left by an interrupted run: {p.relative_to(out)}")
    for sid in sorted(s.image_only):
        problems.append(f"{IMAGES}/{sid}.png has no annotation CSV")
    for sid in sorted(s.csv_only):
        problems.append(f"{ANNOTATIONS}/{sid}.csv: image {IMAGES}/{sid}.png is missing")
    ids = sorted(s.complete | s.csv_only)
    header, lines, read_problems = _read_rows(out, ids)
    problems += read_problems
    expected_cols = meta.get("columns")
    if header is None:
        if not ids:
            problems.append("the dataset has no samples")
        return problems
    cols = header.split(",")
    if expected_cols and cols != list(expected_cols):
        problems.append("annotation columns differ from the columns listed in dataset.json")
    dup_cols = sorted({c for c in cols if cols.count(c) > 1})
    if dup_cols:
        problems.append(f"duplicate column names: {', '.join(dup_cols[:5])}")
        return problems
    required = set(HEAD_COLUMNS) | set(POSE_COLUMNS) | set(K_COLUMNS) | set(R_COLUMNS) | set(T_COLUMNS)
    missing = [c for c in sorted(required | set(landmark_columns())) if c not in cols]
    if missing:
        problems.append(f"missing columns: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
        return problems
    try:
        df = _frame(header, lines)
    except Exception as exc:  # pandas parser errors (ragged rows ...)
        problems.append(f"annotation rows cannot be parsed: {exc}")
        return problems

    # ids: file name == sample_id, no duplicates
    valid_ids = [i for i in ids if not any(p.startswith(f"{i}.csv") for p in read_problems)]
    if len(df) == len(valid_ids):
        bad = [(sid, fid) for sid, fid in zip(df["sample_id"], valid_ids) if sid != fid]
        for sid, fid in bad[:10]:
            problems.append(f"{ANNOTATIONS}/{fid}.csv holds sample_id {sid!r}")
    dups = df["sample_id"][df["sample_id"].duplicated()].unique()
    for d in dups[:10]:
        problems.append(f"duplicate sample_id {d}")

    # numbers (one block conversion; columns that pandas could not parse as numbers are coerced)
    text_cols = {"sample_id", "emotion", "image"}
    num_cols = [c for c in cols if c not in text_cols]
    arr = np.empty((len(df), len(num_cols)), dtype=np.float64)
    kinds = {c: dt.kind for c, dt in df.dtypes.items()}
    ok = [c for c in num_cols if kinds[c] in "fiub"]
    pos = {c: k for k, c in enumerate(num_cols)}
    if ok:
        arr[:, [pos[c] for c in ok]] = df[ok].to_numpy(dtype=np.float64, na_value=np.nan)
    for c in num_cols:
        if kinds[c] not in "fiub":
            arr[:, pos[c]] = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad_cells = ~np.isfinite(arr)
    for k in np.flatnonzero(bad_cells.any(axis=0))[:20]:
        bad = bad_cells[:, k]
        problems.append(f"column {num_cols[k]}: {int(bad.sum())} value(s) do not parse as finite numbers "
                        f"(e.g. sample {df['sample_id'][int(bad.argmax())]})")
    num = {c: arr[:, pos[c]] for c in num_cols}

    def flag(mask, what):
        mask = np.asarray(mask)
        if mask.any():
            first = np.flatnonzero(mask)[:3]
            problems.append(f"{what}: {int(mask.sum())} sample(s), e.g. {', '.join(df['sample_id'][first])}")

    for c in _au_columns(cols):
        v = num[c]
        flag(np.isfinite(v) & ((v < 0) | (v > 1)), f"{c} outside [0, 1]")
    for c in ("width", "height"):
        v = num[c]
        flag(np.isfinite(v) & ((v < 1) | (v != np.round(v))), f"{c} is not a positive whole number")
    vis_cols = [f"lm{i:03d}_visible" for i in range(N_LANDMARKS)]
    vis = np.stack([num[c] for c in vis_cols], axis=1)
    flag((np.isfinite(vis) & (vis != 0) & (vis != 1)).any(axis=1), "visible flags other than 0/1")
    lx = np.stack([num[f"lm{i:03d}_x"] for i in range(N_LANDMARKS)], axis=1)
    ly = np.stack([num[f"lm{i:03d}_y"] for i in range(N_LANDMARKS)], axis=1)
    ld = np.stack([num[f"lm{i:03d}_depth"] for i in range(N_LANDMARKS)], axis=1)
    w, h = num["width"][:, None], num["height"][:, None]
    outside = (vis == 1) & ((lx < 0) | (lx >= w) | (ly < 0) | (ly >= h) | (ld <= 0))
    flag(outside.any(axis=1), "landmarks flagged visible lie outside the image or behind the camera")
    rot = np.stack([num[c] for c in R_COLUMNS], axis=1).reshape(-1, 3, 3)
    with np.errstate(invalid="ignore"):
        orth = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2))
    flag(np.isfinite(orth) & (orth > 1e-6), "r00..r22 is not a rotation")

    # images
    for k, row in enumerate(df.itertuples(index=False)):
        rel = row.image
        p = out / str(rel)
        if str(rel) != f"{IMAGES}/{row.sample_id}.png":
            problems.append(f"sample {row.sample_id}: image column {rel!r} is not {IMAGES}/{row.sample_id}.png")
        if not p.is_file():
            if row.sample_id not in s.csv_only:
                problems.append(f"sample {row.sample_id}: image {rel} is missing")
            continue
        size = png_size(p)
        if size is None:
            problems.append(f"sample {row.sample_id}: {rel} is not a PNG image")
        elif math.isfinite(num["width"][k]) and size != (int(num["width"][k]), int(num["height"][k])):
            problems.append(f"sample {row.sample_id}: image is {size[0]}x{size[1]}, row says "
                            f"{int(num['width'][k])}x{int(num['height'][k])}")

    # index
    idx_csv, idx_pq = out / INDEX_CSV, out / INDEX_PARQUET
    if not idx_csv.is_file():
        problems.append(f"{INDEX_CSV} missing (run `facsgen validate --rebuild-index {out}`)")
    else:
        try:
            idx = read_index(out)
        except Exception as exc:
            problems.append(f"{INDEX_CSV} cannot be read ({exc})")
        else:
            idup = idx["sample_id"][idx["sample_id"].duplicated()].unique() if "sample_id" in idx else []
            for d in idup[:10]:
                problems.append(f"{INDEX_CSV}: duplicate sample_id {d}")
            if list(idx.columns) != cols:
                problems.append(f"{INDEX_CSV}: columns differ from the annotation files")
            elif sorted(idx["sample_id"]) != sorted(df["sample_id"]) or not _same_rows(idx, df):
                problems.append(f"{INDEX_CSV} does not match the per-sample CSVs "
                                f"(run `facsgen validate --rebuild-index {out}`)")
    if not idx_pq.is_file():
        problems.append(f"{INDEX_PARQUET} missing (run `facsgen validate --rebuild-index {out}`)")
    else:
        try:
            pq_ids = read_parquet(idx_pq, columns=["sample_id"])["sample_id"]
        except Exception as exc:
            problems.append(f"{INDEX_PARQUET} cannot be read ({exc})")
        else:
            if sorted(map(str, pq_ids)) != sorted(df["sample_id"]):
                problems.append(f"{INDEX_PARQUET} does not match the per-sample CSVs "
                                f"(run `facsgen validate --rebuild-index {out}`)")
    return problems


def read_parquet(path, columns: list[str] | None = None):
    """A Parquet file (e.g. ``index.parquet``) as a DataFrame, read on the calling thread.

    Not ``pandas.read_parquet``: that reads through Arrow's thread pools, whose threads can
    still be alive at interpreter exit and abort the process after the work is done
    ("terminate called without an active exception", apache/arrow#34314) -- seen here as
    ``facsgen validate`` printing OK and then exiting with SIGABRT on a loaded machine."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(str(path)) as f:  # (pq.read_table starts the dataset thread pool even so)
        return f.read(columns=columns, use_threads=False).to_pandas(use_threads=False)


def _same_rows(a, b) -> bool:
    a = a.sort_values("sample_id").reset_index(drop=True)
    b = b.sort_values("sample_id").reset_index(drop=True)
    if a.shape != b.shape:
        return False
    ka = {c: dt.kind for c, dt in a.dtypes.items()}
    kb = {c: dt.kind for c, dt in b.dtypes.items()}
    numeric = [c for c in a.columns if ka[c] in "fiub" and kb.get(c, "O") in "fiub"]
    if numeric and not np.allclose(a[numeric].to_numpy(dtype=np.float64), b[numeric].to_numpy(dtype=np.float64),
                                   rtol=0, atol=1e-9, equal_nan=True):
        return False
    other = [c for c in a.columns if c not in set(numeric)]
    return all((a[c].astype(str) == b[c].astype(str)).all() for c in other)
