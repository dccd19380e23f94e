# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a sample's render time and image error go, with the pipeline's own settings.

``throughput.py`` says how fast the pipeline is against the naive script; this script says
what the remaining time and error are made of, so that the next speed-up is looked for where
it can be found. Every figure comes from renders of the same samples as
``throughput.py --emotions ...`` (same configuration, same seed), each configuration in its
own subprocess (a Cycles session with persistent data does not reliably pick up a changed
sample count between renders, so no setting is changed mid-run).

Time (per character; seconds per sample, mean over the run's samples):

* ``loop``        the pipeline's ``Job.step()`` render calls, its own settings;
* ``no denoise``  the same without the denoiser -> denoiser = loop - no denoise;
* ``1 spp``       1 sample, no denoiser, minus one sample's path tracing -> the fixed cost of a
  render call (sync, film, PNG); its first render minus the others -> the run's one-off set-up;
* ``background``  the character hidden (camera, world, settings unchanged), no denoiser ->
  what the background pixels cost; scaled by the background's pixel share of the real
  images to estimate their part of the loop;
* ``world change`` the extra time of a render right after the HDRI changes (1 spp, no
  denoiser, median over 16 changes), at world importance-map resolutions 1024 / 2048 / 4096.

Error (``--quality``; needs ``throughput.py --quality`` to have rendered the reference of the
same samples into the same ``--work`` folder, or renders it): mean squared error of the
pipeline's 8-bit images against the converged reference, split into the character's interior,
its silhouette band (pixels the character partly covers, dilated by 1 px) and the background,
using a coverage mask rendered with a transparent film; per region also the error without the
denoiser (what the denoiser removes there) and the mean samples per pixel that Cycles' adaptive
sampling spent (its Debug Sample Count pass, rendered through the compositor); with ``--ref-noise K`` also the
reference's own noise (the first K samples rendered again with another seed: half the MSE
between the two references).

Denoisers (``--denoisers PREFILTER:AUX[:QUALITY],...``, e.g. ``ACCURATE:albedo+normal``,
``NONE:none:FAST``): the same loop with Cycles' denoiser off and OIDN run by the compositor's
Denoise node on the render's noisy image and denoising passes instead. Cycles renders the same
noisy images in every such run (same seed and samples), so the variants differ only in the
denoiser; ``FAST:albedo+normal:HIGH`` is the pipeline's own denoiser and gives its images. Per
variant: seconds per sample and, with ``--quality``, the error by region.

Example::

    /work/venv/bin/python benchmarks/render_costs.py --chars builtin,mblab --emotions Joy,Surprise --quality
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as T  # noqa: E402  (same workers, scene preparation and reference cache)


# =========================================================================== worker side
def run_costs(a: dict) -> dict:
    """One configuration of the pipeline's loop; per-sample render seconds."""
    import bpy

    from facs_dataset_generator.pipeline import runner

    T._setup_file(a)
    job = runner.Job(T._config(a), turn_character=True)
    job.prepare()
    scene = job.scene
    if a.get("overrides"):
        T._apply_overrides(scene, a["overrides"])
    if a.get("hide_character"):
        for ob in scene.objects:
            if ob.type != "CAMERA":
                ob.hide_render = True
    if a.get("mask"):  # coverage: transparent film, RGBA, enough samples for a clean alpha
        scene.render.film_transparent = True
        scene.render.image_settings.color_mode = "RGBA"
        scene.cycles.samples = 64
        scene.cycles.use_denoising = False
        scene.cycles.use_adaptive_sampling = False
    if a.get("spp_map"):
        _sample_count_output(scene)
    if a.get("denoiser"):
        _denoise_output(scene, parse_denoiser(a["denoiser"]))
    if a.get("map_res") and job.world is not None:
        job.world.world.cycles.sample_map_resolution = int(a["map_res"])
    out = {"settings": T._settings_summary(scene)}
    if a.get("world_change"):
        job.step()  # the first sample: scene synced, first world map built

        def render():
            t = time.perf_counter()
            bpy.ops.render.render(scene=scene.name)
            return time.perf_counter() - t

        still = [render() for _ in range(3)]
        changes = []
        for name in list(job.world.images) * 2:
            job.world.set(name, 0.0, 1.0)
            changes.append(render())
        job._pending.clear()
        job.finish()
        out.update(still=min(still), change=statistics.median(changes))
        return out
    times, prev, rendered = [], 0.0, []
    with RenderedSamples() as counter:
        while job.step():
            times.append(job.render_seconds - prev)
            prev = job.render_seconds
            rendered.append(counter.take())
    job.finish()
    out.update(times=times, rendered=rendered)
    return out


class RenderedSamples:
    """The samples Cycles actually rendered in each render call, from its progress messages
    ("... | Sample 16/28"; ``bpy.app.handlers.render_stats``). Adaptive sampling ends a render
    early when every pixel has converged, and the Debug Sample Count pass is then a share of
    the samples rendered, not of the sample setting. :meth:`take` returns the largest count
    reported since the last call (0 if none), and starts counting again."""

    _PATTERN = re.compile(r"Sample (\d+)/(\d+)")

    def __init__(self):
        self._max = 0

    def _on_stats(self, stats, *_args) -> None:
        for done, _total in self._PATTERN.findall(str(stats)):
            self._max = max(self._max, int(done))

    def __enter__(self):
        import bpy

        bpy.app.handlers.render_stats.append(self._on_stats)
        return self

    def __exit__(self, *exc) -> None:
        import bpy

        if self._on_stats in bpy.app.handlers.render_stats:
            bpy.app.handlers.render_stats.remove(self._on_stats)

    def take(self) -> int:
        got, self._max = self._max, 0
        return got


def _compositor(scene, name: str):
    """A new, empty compositor for ``scene`` (turned on): (node tree, its Render Layers node,
    the input socket whose image is written)."""
    import bpy

    if hasattr(scene, "compositing_node_group"):  # Blender 5: the compositor is a node group
        tree = bpy.data.node_groups.new(name, "CompositorNodeTree")
        scene.compositing_node_group = tree
        tree.interface.new_socket("Image", in_out="OUTPUT", socket_type="NodeSocketColor")
        out = tree.nodes.new("NodeGroupOutput").inputs[0]
    else:  # Blender 4.x
        scene.use_nodes = True
        tree = scene.node_tree
        tree.nodes.clear()
        out = tree.nodes.new("CompositorNodeComposite").inputs["Image"]
    scene.render.use_compositing = True
    return tree, tree.nodes.new("CompositorNodeRLayers"), out


def _sample_count_output(scene) -> None:
    """Write Cycles' per-pixel sample count instead of the image: the view layer's Debug Sample
    Count pass (samples taken / samples rendered) through the compositor, with a Raw view
    transform, so that an 8-bit pixel is round(255 * count / rendered). ``rendered`` is the
    sample setting unless adaptive sampling stopped every pixel before it (see
    :class:`RenderedSamples`). Changes ``scene`` for good (a benchmark worker's own file)."""
    scene.view_layers[0].cycles.pass_debug_sample_count = True
    tree, layer, out = _compositor(scene, "facsgen sample count")
    tree.links.new(layer.outputs["Debug Sample Count"], out)
    vs = scene.view_settings
    vs.view_transform, vs.look, vs.exposure, vs.gamma = "Raw", "None", 0.0, 1.0
    scene.render.image_settings.color_mode = "BW"


PREFILTERS = ("NONE", "FAST", "ACCURATE")
QUALITIES = ("HIGH", "BALANCED", "FAST")
AUX = {"albedo+normal": ("Albedo", "Normal"), "albedo": ("Albedo",), "none": ()}


def parse_denoiser(spec: str) -> tuple[str, str, str]:
    """``PREFILTER:AUX[:QUALITY]`` -> (prefilter, aux, quality), e.g. ``accurate:albedo+normal``
    -> ('ACCURATE', 'albedo+normal', 'HIGH'). ValueError naming the part that is wrong."""
    parts = [x.strip() for x in str(spec).split(":")]
    if len(parts) not in (2, 3):
        raise ValueError(f"denoiser {spec!r}: expected PREFILTER:AUX[:QUALITY], e.g. ACCURATE:albedo+normal:HIGH")
    prefilter, aux = parts[0].upper(), parts[1].lower()
    quality = parts[2].upper() if len(parts) == 3 else "HIGH"
    for what, val, allowed in (("prefilter", prefilter, PREFILTERS), ("aux", aux, tuple(AUX)),
                               ("quality", quality, QUALITIES)):
        if val not in allowed:
            raise ValueError(f"denoiser {spec!r}: unknown {what} {val!r} (expected one of {', '.join(allowed)})")
    return prefilter, aux, quality


def _denoise_output(scene, denoiser: tuple[str, str, str]) -> None:
    """Cycles' denoiser off; OIDN through the compositor's Denoise node instead, on the noisy
    image with the ``aux`` denoising passes, ``prefilter`` and ``quality`` as given. Changes
    ``scene`` for good (a benchmark worker's own file)."""
    prefilter, aux, quality = denoiser
    scene.cycles.use_denoising = False
    scene.view_layers[0].cycles.denoising_store_passes = True
    tree, layer, out = _compositor(scene, "facsgen denoise")
    node = tree.nodes.new("CompositorNodeDenoise")
    for name, ident in (("Prefilter", prefilter), ("Quality", quality)):
        if name in node.inputs:  # Blender 5: menu sockets, items by their UI names
            node.inputs[name].default_value = ident.title()
        else:
            setattr(node, name.lower(), ident)
    if "HDR" in node.inputs:
        node.inputs["HDR"].default_value = True
    else:
        node.use_hdr = True
    tree.links.new(layer.outputs["Image"], node.inputs["Image"])
    for pas in AUX[aux]:
        tree.links.new(layer.outputs[f"Denoising {pas}"], node.inputs[pas])
    tree.links.new(node.outputs["Image"], out)


def worker_main(spec: str) -> None:
    a = json.loads(spec)
    if a["variant"] != "costs":  # reference renders: throughput.py's own worker
        T.worker_main(spec)
        return
    print("@@RESULT " + json.dumps(run_costs(a), default=str), flush=True)


def spawn(a: dict, log: Path) -> dict:
    return T.spawn(a, log, script=Path(__file__).resolve())


# =========================================================================== analysis
def regions(alpha):
    """Pixel masks from a coverage (alpha 0-1) image: the silhouette band (partly covered pixels,
    dilated by 1 px), the character's interior and the background, the band excluded from both."""
    import cv2
    import numpy as np

    band = cv2.dilate(((alpha > 0.001) & (alpha < 0.999)).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return {"silhouette": band, "interior": (alpha >= 0.999) & ~band, "background": (alpha <= 0.001) & ~band}


def error_split(test: Path, ref: Path, mask: Path, n: int) -> dict:
    """MSE (8-bit RGB, per pixel) of ``test`` vs ``ref`` inside the character, on its
    silhouette band and on the background; shares of the total squared error and of the pixels."""
    import cv2
    import numpy as np

    sse = {"interior": 0.0, "silhouette": 0.0, "background": 0.0}
    px = dict.fromkeys(sse, 0)

    def read(folder: Path, name: str, flags: int) -> np.ndarray:
        img = cv2.imread(str(folder / "images" / name), flags)
        if img is None:
            raise FileNotFoundError(f"{folder / 'images' / name} is missing or not an image")
        return img.astype(np.float64)

    for i in range(n):
        name = f"{i:06d}.png"
        alpha = read(mask, name, cv2.IMREAD_UNCHANGED)[..., 3] / 255.0
        r = read(ref, name, cv2.IMREAD_COLOR)
        t = read(test, name, cv2.IMREAD_COLOR)
        err = ((r - t) ** 2).mean(axis=2)
        for k, m in regions(alpha).items():
            sse[k] += float(err[m].sum())
            px[k] += int(m.sum())
    total_sse, total_px = sum(sse.values()), sum(px.values())
    return {k: {"mse": sse[k] / max(px[k], 1), "error_share": sse[k] / max(total_sse, 1e-12),
                "pixel_share": px[k] / total_px} for k in sse} | {
        "psnr": float(10 * np.log10(255.0 ** 2 / max(total_sse / total_px, 1e-12)))}


def samples_split(spp_dir: Path, mask: Path, n: int, samples: int, rendered=None) -> dict:
    """Mean samples per pixel in the character's interior, on its silhouette band and on the
    background (regions as in ``error_split``), and the share of each region at ``samples``
    (the setting). ``rendered``: per image, the samples Cycles rendered (the map's 100%;
    default: ``samples`` for every image)."""
    import cv2
    import numpy as np

    rendered = [samples] * n if rendered is None else list(rendered)
    if len(rendered) < n:
        raise ValueError(f"rendered sample counts for {len(rendered)} images, expected {n}")

    acc = {k: [0.0, 0, 0] for k in ("interior", "silhouette", "background")}  # sum, pixels, at max
    for i in range(n):
        name = f"{i:06d}.png"
        alpha = cv2.imread(str(mask / "images" / name), cv2.IMREAD_UNCHANGED)[..., 3] / 255.0
        img = cv2.imread(str(spp_dir / "images" / name), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise FileNotFoundError(f"{spp_dir / 'images' / name} is missing or not an image")
        count = np.rint(img.astype(np.float64) / 255.0 * (rendered[i] or samples))
        for k, m in regions(alpha).items():
            acc[k][0] += float(count[m].sum())
            acc[k][1] += int(m.sum())
            acc[k][2] += int((count[m] >= samples).sum())
    out = {k: {"mean": v[0] / max(v[1], 1), "at_max": v[2] / max(v[1], 1)} for k, v in acc.items()}
    # images with no progress message from Cycles: decoded as if all ``samples`` were rendered
    out["unknown_rendered"] = sum(1 for r in rendered[:n] if not r)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--res", type=int, default=256)
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--emotions", default="Joy,Surprise")
    p.add_argument("--chars", default="builtin,mblab")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2, help="runs of each timing configuration, interleaved")
    p.add_argument("--quality", action="store_true", help="split the image error by region (needs a reference)")
    p.add_argument("--ref-spp", type=int, default=512)
    p.add_argument("--ref-noise", type=int, default=0, help="render the first K reference samples again (seed 1)")
    p.add_argument("--set", action="append", metavar="KEY=VAL,...",
                   help="scene overrides for every timing run and the sample-count map, as throughput.py "
                        "--proto-set, e.g. cycles.samples=64,cycles.adaptive_threshold=0.08")
    p.add_argument("--denoisers", default="",
                   help="comma-separated PREFILTER:AUX[:QUALITY] (prefilter NONE/FAST/ACCURATE, aux "
                        "albedo+normal/albedo/none, quality HIGH/BALANCED/FAST): the loop with OIDN run by the "
                        "compositor on the same noisy renders, e.g. FAST:albedo+normal,ACCURATE:albedo+normal")
    p.add_argument("--work", default="/tmp/facsgen_throughput")
    args = p.parse_args(argv)
    denoisers = [d.strip() for d in args.denoisers.split(",") if d.strip()]
    for d in denoisers:
        try:
            parse_denoiser(d)
        except ValueError as exc:
            p.error(str(exc))
    if args.worker:
        worker_main(args.worker)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "render_costs.log"
    emotions = [e.strip() for e in args.emotions.split(",") if e.strip()]
    user = T.parse_overrides(args.set)
    spp = int(user.get("cycles.samples", T.pipeline_default_samples()))
    base = {"n": args.n, "res": args.res, "spp": spp, "views": args.views, "device": "cpu", "threads": 0,
            "seed": args.seed, "emotions": emotions, "variant": "costs"}
    print(f"== render costs: N={args.n} ({', '.join(emotions) or 'all emotions'}, {args.views} views per expression), "
          f"{args.res}x{args.res}, pipeline settings ({spp} spp{', overrides ' + str(user) if user else ''}); "
          f"command: {' '.join(sys.argv)}")
    for char in args.chars.split(","):
        def run(tag, _char=char, **extra):
            out = work / f"costs_{_char}_{tag}"
            shutil.rmtree(out, ignore_errors=True)
            r = spawn(dict(base, char=_char, out=str(out), **extra), log)
            r["out"] = out
            return r

        configs = {
            "loop": {"overrides": user},
            "nodn": {"overrides": {**user, "cycles.use_denoising": False}},
            "one": {"overrides": {**user, "cycles.use_denoising": False, "cycles.samples": 1}},
            "bg": {"overrides": {**user, "cycles.use_denoising": False}, "hide_character": True},
        }
        runs = {k: [] for k in configs}
        for rep in range(args.repeats):  # interleaved (ABCD DCBA): the machine's drift cancels out
            for k in (list(configs) if rep % 2 == 0 else list(reversed(configs))):
                runs[k].append(run(f"{k}_{rep}", **configs[k]))
        loop = runs["loop"][0]
        mask = run("mask", mask=True)
        mean = {k: statistics.fmean(statistics.fmean(r["times"]) for r in rs) for k, rs in runs.items()}
        steady = {k: statistics.fmean(statistics.fmean(r["times"][1:]) for r in runs[k]) for k in ("loop", "one")}
        import cv2
        import numpy as np

        bg_share = float(np.mean([
            (cv2.imread(str(pth), cv2.IMREAD_UNCHANGED)[..., 3] == 0).mean()
            for pth in sorted((mask["out"] / "images").glob("*.png"))]))
        per_spp = (mean["nodn"] - mean["one"]) / max(spp - 1, 1)  # path tracing per sample per pixel
        fixed = steady["one"] - per_spp
        denoise = mean["loop"] - mean["nodn"]
        pt = mean["nodn"] - fixed  # also holds the run's one-off set-up and HDRI changes (printed below)
        pt_bg = max(mean["bg"] - fixed, 0.0) * bg_share
        first = statistics.fmean(r["times"][0] for r in runs["one"]) - steady["one"]  # 1 spp: views cost alike
        L = mean["loop"]
        print(f"-- {char}: {L:.3f} s per sample (loop mean of {args.repeats} run(s); the first sample "
              f"{statistics.fmean(r['times'][0] for r in runs['loop']):.3f} s, the others {steady['loop']:.3f} s)")
        print(f"   fixed per render call (sync, film, PNG)     {fixed:.3f} s  {100 * fixed / L:4.1f}%")
        print(f"   denoiser                                    {denoise:.3f} s  {100 * denoise / L:4.1f}%")
        print(f"   path tracing (+ the rest: set-up, HDRI)      {pt:.3f} s  {100 * pt / L:4.1f}%  "
              f"(background pixels ~{pt_bg:.3f} s = {100 * pt_bg / L:.1f}%; they are {100 * bg_share:.0f}% "
              f"of the pixels)")
        print(f"   first render's extra (scene, BVH, images, world map)  {first:.3f} s once per run")
        for res in (1024, 2048, 4096):
            wc = run(f"world{res}", overrides={"cycles.use_denoising": False, "cycles.samples": 1},
                     world_change=True, map_res=res)
            print(f"   HDRI change, world map {res:4d}: +{wc['change'] - wc['still']:.3f} s per change"
                  + ("  (pipeline default)" if loop["settings"]["world_map"][1] == res else ""))
        if args.quality:
            ref = work / f"ref_{char}_{args.res}_{args.n}_{args.ref_spp}_{args.seed}_{T._scene_key(base)}"
            if not (ref / "images").is_dir() or len(list((ref / "images").glob("*.png"))) < args.n:
                shutil.rmtree(ref, ignore_errors=True)
                spawn(dict(base, char=char, variant="reference", out=str(ref), ref_spp=args.ref_spp), log)
            split = error_split(runs["loop"][0]["out"], ref, mask["out"], args.n)
            raw = error_split(runs["nodn"][0]["out"], ref, mask["out"], args.n)
            smax = loop["settings"]["samples"]
            sm = run("spp_map", overrides=user, spp_map=True)
            spp_map = samples_split(sm["out"], mask["out"], args.n, smax, sm["rendered"])
            print(f"   image error vs {args.ref_spp} spp reference: PSNR {split['psnr']:.2f} dB (pooled); "
                  f"samples per pixel from Cycles' adaptive sampling (at most {smax}, checked every 16)")
            if spp_map["unknown_rendered"]:
                print(f"     NOTE: {spp_map['unknown_rendered']} of {args.n} images gave no 'Sample N/M' progress "
                      f"message: their counts assume all {smax} samples were rendered (too high if Cycles stopped early)")
            for k in ("interior", "silhouette", "background"):
                s = split[k]
                print(f"     {k:10s} MSE {s['mse']:7.2f}  {100 * s['error_share']:4.1f}% of the error, "
                      f"{100 * s['pixel_share']:4.1f}% of the pixels; without the denoiser MSE "
                      f"{raw[k]['mse']:7.2f} (the denoiser removes {raw[k]['mse'] / max(s['mse'], 1e-9):4.1f}x); "
                      f"{spp_map[k]['mean']:5.1f} spp, {100 * spp_map[k]['at_max']:3.0f}% at {smax}")
        for i, d in enumerate(denoisers):
            r = run(f"denoiser{i}", overrides=user, denoiser=d)
            line = f"   denoiser {d:32s} {statistics.fmean(r['times']):.3f} s per sample"
            if args.quality:
                e = error_split(r["out"], ref, mask["out"], args.n)
                line += f"; PSNR {e['psnr']:.2f} dB; MSE " + ", ".join(
                    f"{k} {e[k]['mse']:.2f}" for k in ("interior", "silhouette", "background"))
            print(line, flush=True)
        if args.quality and args.ref_noise:
            k = min(args.ref_noise, args.n)
            ref2 = work / f"costs_{char}_ref_seed1"
            shutil.rmtree(ref2, ignore_errors=True)
            spawn(dict(base, char=char, variant="reference", out=str(ref2), ref_spp=args.ref_spp, n=args.n,
                       ref_seed=1, stop_after=k), log)
            noise = error_split(ref2, ref, mask["out"], k)
            print(f"     reference's own noise (first {k} samples, seed 1 vs 0, half the MSE): "
                  + ", ".join(f"{r} {noise[r]['mse'] / 2:.2f}" for r in ("interior", "silhouette", "background")))


if __name__ == "__main__":
    main()
