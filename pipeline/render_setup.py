# SPDX-License-Identifier: GPL-3.0-or-later
"""Scene handling for a generation run: the run's own camera and world, render settings,
Cycles device choice, and an exact restore of the user's scene afterwards.

Everything the run changes goes through :class:`SceneState`: it records the old value of
each RNA property the first time it is set, snapshots what the character adapter may move
(shape-key values, object transforms, pose bones, material inputs), and removes the
datablocks it created. :meth:`SceneState.restore` puts everything back.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import bpy
import numpy as np

from ..core import cameras
from ..core.config import DEVICES, ConfigError

CAMERA_NAME = "FACSGEN Camera"
WORLD_NAME = "FACSGEN World"
_RIG_PREFIXES = ("facs_rig_",)  # MB-Lab FACS slider widgets: never rendered

#: Fast-path defaults (measured in benchmarks/throughput.py; checked by tests/test_throughput_settings.py).
DENOISING_PREFILTER = "FAST"  # OIDN albedo/normal prefilter (Blender's default ACCURATE: ~2x the denoise time)
WORLD_MAP_RESOLUTION = 2048  # world importance map of the run's HDRI world (Blender's AUTOMATIC = 4096 here)
SAMPLING_PATTERN = "BLUE_NOISE"  # error spread as blue noise, which OIDN removes better (+0.2 dB here)
ADAPTIVE_MIN_SAMPLES = 4  # adaptive sampling may stop a converged pixel (background) after 4 samples
#: The pipeline's default samples per pixel and adaptive-sampling noise threshold
#: (``core.config.RenderConfig``): with blue noise, the FAST prefilter and at least 4 samples,
#: 28 spp / 0.02 is as close to a converged reference as a 16 spp render with a new scene's
#: defaults (ACCURATE prefilter, AUTOMATIC world map, threshold 0.01), for about half the time
#: (benchmarks/throughput.py --quality; figures in the README).
DEFAULT_SAMPLES = 28
NOISE_THRESHOLD = 0.02


class SceneState:
    """Records changes to the user's scene so that :meth:`restore` undoes them."""

    def __init__(self, scene: bpy.types.Scene):
        self.scene = scene
        self._props: list[tuple[object, str, object]] = []
        self._seen: set[tuple[int, str]] = set()
        self._created: list[bpy.types.ID] = []
        self._shape_keys: list[tuple[bpy.types.Key, np.ndarray]] = []
        self._objects: list[tuple[bpy.types.Object, object]] = []
        self._pose: list[tuple[bpy.types.PoseBone, tuple]] = []
        self._sockets: list[tuple[object, object]] = []
        self._callbacks: list[tuple[object, tuple]] = []
        self._idprops: list[tuple[object, str, object]] = []
        self.restored = False

    def on_restore(self, func, *args) -> None:
        """Call ``func(*args)`` first thing in :meth:`restore` (e.g. an adapter's restore_state)."""
        self._callbacks.append((func, args))

    # ---------------------------------------------------------------- properties
    def set(self, owner, attr: str, value) -> None:
        """``setattr(owner, attr, value)``, remembering the first old value."""
        key = (owner.as_pointer() if hasattr(owner, "as_pointer") else id(owner), attr)
        if key not in self._seen:
            self._seen.add(key)
            old = getattr(owner, attr)
            if hasattr(old, "copy") and not isinstance(old, bpy.types.ID):
                old = old.copy()
            self._props.append((owner, attr, old))
        setattr(owner, attr, value)

    def created(self, idblock):
        self._created.append(idblock)
        return idblock

    # ---------------------------------------------------------------- character snapshot
    def snapshot_character(self, obj: bpy.types.Object) -> None:
        """Snapshot what posing the character can change: shape keys of every mesh in the
        scene, every object's transform (rig sliders), the armature's pose bones, and the
        unlinked inputs of the character's material nodes (skin tone)."""
        for ob in self.scene.objects:
            self._objects.append((ob, ob.matrix_basis.copy()))
            key = ob.data.shape_keys if ob.type == "MESH" and ob.data is not None else None
            if key is not None and key.key_blocks:
                vals = np.empty(len(key.key_blocks), dtype=np.float32)
                key.key_blocks.foreach_get("value", vals)
                self._shape_keys.append((key, vals))
            if ob.type == "ARMATURE" and ob.pose is not None:
                for pb in ob.pose.bones:
                    self._pose.append((pb, (pb.location.copy(), pb.rotation_quaternion.copy(),
                                            pb.rotation_euler.copy(), pb.scale.copy())))
        for slot in obj.material_slots:
            mat = slot.material
            if mat is None or mat.node_tree is None:
                continue
            for node in mat.node_tree.nodes:
                for sock in node.inputs:
                    if sock.is_linked or not hasattr(sock, "default_value"):
                        continue
                    v = sock.default_value
                    self._sockets.append((sock, tuple(v) if hasattr(v, "__len__") else v))
        self.set(obj, "color", tuple(obj.color))
        # simple custom properties (e.g. the built-in head's skin tone, read by its material)
        self._idprops = [(obj, k, obj[k]) for k in obj.keys() if isinstance(obj[k], (int, float, str))]

    # ---------------------------------------------------------------- restore
    def restore(self) -> None:
        if self.restored:
            return
        self.restored = True
        for func, args in reversed(self._callbacks):
            try:
                func(*args)
            except (ReferenceError, AttributeError, KeyError, ValueError):
                pass
        for owner, attr, old in reversed(self._props):
            try:
                setattr(owner, attr, old)
            except (ReferenceError, AttributeError, TypeError, ValueError):
                pass
        for key, vals in self._shape_keys:
            try:
                key.key_blocks.foreach_set("value", vals)
            except ReferenceError:
                pass
        for ob, mb in self._objects:
            try:
                if ob.matrix_basis != mb:
                    ob.matrix_basis = mb
            except ReferenceError:
                pass
        for pb, (loc, quat, eul, scale) in self._pose:
            try:
                pb.location, pb.rotation_quaternion, pb.rotation_euler, pb.scale = loc, quat, eul, scale
            except ReferenceError:
                pass
        for ob, k, v in self._idprops:
            try:
                if ob.get(k) != v:
                    ob[k] = v
                    ob.update_tag()
            except (ReferenceError, TypeError):
                pass
        for sock, v in self._sockets:
            try:
                sock.default_value = v
            except (ReferenceError, TypeError, ValueError):
                pass
        for idb in reversed(self._created):
            try:
                coll = _collection_of(idb)
                if coll is not None and idb.name in coll:
                    coll.remove(idb)
            except ReferenceError:
                pass
        for key, _vals in self._shape_keys:
            try:
                key.user.update_tag()
            except (ReferenceError, AttributeError):
                pass
        try:
            bpy.context.view_layer.update()
        except Exception:
            pass


#: ID type -> name of its ``bpy.data`` collection (the datablocks a run may create)
_COLLECTIONS = (("Object", "objects"), ("Camera", "cameras"), ("World", "worlds"), ("Image", "images"),
                ("Mesh", "meshes"), ("Material", "materials"))


def _collection_of(idb):
    for type_name, collection in _COLLECTIONS:
        if isinstance(idb, getattr(bpy.types, type_name)):
            return getattr(bpy.data, collection)
    return None


# --------------------------------------------------------------------------- render settings


def _eevee_engine_id() -> str:
    items = {e.identifier for e in bpy.types.RenderSettings.bl_rna.properties["engine"].enum_items}
    for cand in ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"):
        if cand in items:
            return cand
    return "BLENDER_EEVEE"


#: Cycles' GPU compute backends, in the order ``--device gpu/auto`` tries them.
GPU_BACKENDS = ("OPTIX", "CUDA", "HIP", "METAL", "ONEAPI")


def _cycles_prefs():
    try:
        return bpy.context.preferences.addons["cycles"].preferences
    except (KeyError, AttributeError):
        return None


def _use_backend(prefs, backend: str) -> bool:
    """Switch Cycles to ``backend`` and render on its GPUs alone (the CPU entry off: CPU + GPU
    is slower for small frames); the GPUs the user already enabled in that backend stay the
    choice, else all of them. False (and nothing enabled) when it has no device here."""
    try:
        prefs.compute_device_type = backend
    except TypeError:  # not a backend of this Blender build / platform
        return False
    prefs.refresh_devices()
    gpus = [d for d in prefs.devices if d.type == backend]
    if not gpus:
        return False
    chosen = {id(d) for d in gpus if d.use} or {id(d) for d in gpus}
    for d in prefs.devices:
        if d.type in (backend, "CPU"):  # other backends' ticks are not read while this one is set
            d.use = id(d) in chosen
    return True


def _device_flags(prefs) -> dict:
    """The ``use`` tick of every Cycles device entry, by (backend, device id), after a refresh
    (which adds the entries of devices not listed yet, ticked as Cycles ticks them)."""
    try:
        prefs.refresh_devices()
        return {(d.type, d.id): bool(d.use) for d in prefs.devices}
    except Exception:  # no device query on this build / driver: nothing to restore
        return {}


def _restore_device_flags(flags: dict) -> None:
    """Put the device ticks recorded by :func:`_device_flags` back. Entries are looked up again
    (not kept): adding entries to the collection may move them in memory."""
    prefs = _cycles_prefs()
    if prefs is None or not flags:
        return
    for d in prefs.devices:
        old = flags.get((d.type, d.id))
        if old is not None and bool(d.use) != old:
            d.use = old


def gpu_devices_available(configure: bool = True, backend: str | None = None) -> bool:
    """True when Cycles has a GPU compute device; with ``configure`` and none enabled,
    enables the devices of the first backend that has any (OPTIX, CUDA, HIP, METAL, ONEAPI).
    With ``backend`` (e.g. ``"CUDA"``), only that backend counts (and, with ``configure``, it
    becomes the one Cycles uses)."""
    prefs = _cycles_prefs()
    if prefs is None:
        return False
    try:
        if backend is not None:
            if not configure:  # only look: the preferences stay as they are
                return any(d.type == backend for d in prefs.get_devices_for_type(backend))
            return _use_backend(prefs, backend)
        if prefs.compute_device_type != "NONE":
            prefs.refresh_devices()
            if any(d.use and d.type == prefs.compute_device_type for d in prefs.devices):
                return True
        if not configure:
            return False
        for name in GPU_BACKENDS:
            if _use_backend(prefs, name):
                return True
        prefs.compute_device_type = "NONE"
    except Exception:
        return False
    return False


def compute_devices() -> str:
    """Cycles' compute backend and the devices enabled in it, e.g. 'OPTIX: NVIDIA H200'."""
    prefs = _cycles_prefs()
    if prefs is None:
        return "?"
    kind = prefs.compute_device_type
    return f"{kind}: {', '.join(d.name for d in prefs.devices if d.use and d.type in (kind, 'CPU')) or '?'}"


def device_label(scene: bpy.types.Scene) -> str:
    """What the scene renders on, for the run's first progress line: 'CPU', or e.g.
    'GPU (OPTIX: NVIDIA H200; ...)' with a note that the first GPU render may compile kernels."""
    if scene.render.engine != "CYCLES":
        return "GPU (EEVEE)"
    if scene.cycles.device != "GPU":
        return "CPU"
    return (f"GPU ({compute_devices()}; the first render compiles Cycles' kernels where "
            f"this Blender has none prebuilt for the card, which can take minutes)")


def choose_device(device: str, state: SceneState | None = None) -> str:
    """'CPU' or 'GPU' for Cycles from 'cpu' | 'gpu' | 'auto', or a backend name ('optix',
    'cuda', 'hip', 'metal', 'oneapi': the GPU through that backend only). ConfigError for
    'gpu' or a backend with no device here."""
    device = (device or "auto").lower()
    if device == "cpu":
        return "CPU"
    if device not in DEVICES:
        raise ConfigError(f"unknown render device {device!r} (expected {', '.join(DEVICES)})")
    backend = device.upper() if device.upper() in GPU_BACKENDS else None
    prefs = _cycles_prefs()
    if prefs is not None and state is not None:  # the run changes the user's preferences: undo at the end
        state.set(prefs, "compute_device_type", prefs.compute_device_type)
        state.on_restore(_restore_device_flags, _device_flags(prefs))
    has_gpu = gpu_devices_available(configure=True, backend=backend)
    if backend is not None and not has_gpu:
        raise ConfigError(f"render device {device!r}: Cycles has no {backend} device here "
                          f"(GPUs found: {_gpus_found(prefs)})")
    if device == "gpu" and not has_gpu:
        raise ConfigError("render device 'gpu': no Cycles GPU compute device is available (CUDA/OptiX/HIP/Metal/oneAPI)")
    return "GPU" if has_gpu else "CPU"


def _gpus_found(prefs) -> str:
    """'CUDA: NVIDIA H100, OPTIX: NVIDIA H100' or 'none', for error messages."""
    if prefs is None:
        return "none (Cycles is not available)"
    found = []
    for name in GPU_BACKENDS:
        try:
            found += [f"{name}: {d.name}" for d in prefs.get_devices_for_type(name) if d.type == name]
        except Exception:  # not a backend of this build / platform
            continue
    return ", ".join(found) or "none"


def apply_render_settings(scene: bpy.types.Scene, rc, state: SceneState) -> str:
    """Apply the run's RenderConfig to ``scene`` (through ``state``); returns the device used."""
    r = scene.render
    engine = rc.engine
    if engine not in ("CYCLES", "BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"):
        raise ConfigError(f"unknown render engine {engine!r} (expected CYCLES or BLENDER_EEVEE_NEXT)")
    if engine != "CYCLES":
        engine = _eevee_engine_id()
    state.set(r, "engine", engine)
    w, h = (int(v) for v in rc.resolution)
    state.set(r, "resolution_x", w)
    state.set(r, "resolution_y", h)
    state.set(r, "resolution_percentage", int(rc.resolution_percentage))
    state.set(r, "use_border", False)
    state.set(r, "use_file_extension", False)
    state.set(r, "use_compositing", False)
    state.set(r, "use_sequencer", False)
    state.set(r, "film_transparent", False)
    state.set(r, "use_persistent_data", True)
    state.set(r, "use_lock_interface", True)
    threads = os.environ.get("FACSGEN_RENDER_THREADS", "").strip()
    if threads:  # set by the Ray driver: a CPU shard renders with its CPU budget, not every core
        if not threads.isdigit() or int(threads) < 1:
            raise ConfigError(f"FACSGEN_RENDER_THREADS must be a positive integer, got {threads!r}")
        state.set(r, "threads_mode", "FIXED")
        state.set(r, "threads", int(threads))
    img = r.image_settings
    try:
        state.set(img, "media_type", "IMAGE")
    except (AttributeError, TypeError):
        pass
    state.set(img, "file_format", "PNG")
    state.set(img, "color_mode", "RGB")
    state.set(img, "color_depth", "8")
    state.set(img, "compression", 15)
    device = "CPU"
    if engine == "CYCLES":
        c = scene.cycles
        device = choose_device(rc.device, state)
        state.set(c, "device", device)
        state.set(c, "samples", int(rc.samples))
        threshold = float(getattr(rc, "noise_threshold", NOISE_THRESHOLD))
        state.set(c, "use_adaptive_sampling", threshold > 0)
        if threshold > 0:
            state.set(c, "adaptive_threshold", threshold)
            state.set(c, "adaptive_min_samples", min(ADAPTIVE_MIN_SAMPLES, int(rc.samples)))
        try:
            state.set(c, "sampling_pattern", SAMPLING_PATTERN)
        except TypeError:  # a Blender without blue-noise sampling (before 4.2): its default stays
            pass
        state.set(c, "use_denoising", bool(rc.denoise))
        if hasattr(c, "denoising_use_gpu"):
            # Blender's default is False: on a GPU run OIDN would denoise on the CPU, which at
            # 512x512 costs more than the GPU's path tracing. OIDN's GPU devices give the same
            # images up to float rounding; a CPU run is unaffected.
            state.set(c, "denoising_use_gpu", device == "GPU")
        if rc.denoise:
            # fast path (benchmarks/throughput.py): OIDN's ACCURATE prefilter of the albedo /
            # normal passes is about half of a 256x256 / 16 spp CPU render; FAST costs ~0.6 dB
            # PSNR, which the finer world importance map below more than wins back.
            state.set(c, "denoising_prefilter", DENOISING_PREFILTER)
        if hasattr(c, "use_animated_seed"):
            state.set(c, "use_animated_seed", False)
        state.set(c, "seed", 0)
    else:
        ee = scene.eevee
        if hasattr(ee, "taa_render_samples"):
            state.set(ee, "taa_render_samples", int(rc.samples))
        device = "GPU"
    return device


# --------------------------------------------------------------------------- camera


def make_camera(scene: bpy.types.Scene, cc, state: SceneState) -> bpy.types.Object:
    """The run's own perspective camera, linked to the scene and made active."""
    if cc.sensor_fit not in cameras.SENSOR_FITS:
        raise ConfigError(f"unknown sensor fit {cc.sensor_fit!r} (expected one of: {', '.join(cameras.SENSOR_FITS)})")
    data = state.created(bpy.data.cameras.new(CAMERA_NAME))
    data.type = "PERSP"
    data.lens_unit = "MILLIMETERS"
    data.lens = float(cc.focal_length)
    data.sensor_width = float(cc.sensor_width)
    data.sensor_height = float(cc.sensor_width) * 24.0 / 36.0
    data.sensor_fit = cc.sensor_fit
    data.clip_start = 0.01
    data.clip_end = 100.0
    ob = state.created(bpy.data.objects.new(CAMERA_NAME, data))
    scene.collection.objects.link(ob)
    state.set(scene, "camera", ob)
    return ob


def camera_intrinsics(cam_ob: bpy.types.Object, scene: bpy.types.Scene) -> tuple[np.ndarray, int, int]:
    """K, width, height read from the actual Blender camera and render settings."""
    cam = cam_ob.data
    if cam.type != "PERSP":
        raise ConfigError(f"camera {cam_ob.name!r} is {cam.type}; only perspective cameras are supported")
    r = scene.render
    lens = cam.lens if cam.lens_unit == "MILLIMETERS" else (0.5 * cam.sensor_width / math.tan(cam.angle / 2.0))
    return cameras.intrinsics(
        lens, cam.sensor_width, cam.sensor_height, cam.sensor_fit, r.resolution_x, r.resolution_y,
        r.resolution_percentage, r.pixel_aspect_x, r.pixel_aspect_y, cam.shift_x, cam.shift_y,
    )


def set_matrix_world(ob: bpy.types.Object, m: np.ndarray) -> None:
    import mathutils

    ob.matrix_world = mathutils.Matrix(np.asarray(m, dtype=np.float64).tolist())


def object_vertex_positions(scene: bpy.types.Scene, name: str, group: str | None) -> np.ndarray:
    """World positions of an object's vertices (optionally only those in ``group``): the
    camera positions of layout ``object``."""
    ob = scene.objects.get(name) or bpy.data.objects.get(name)
    if ob is None:
        raise ConfigError(f"camera source object {name!r} not found")
    if ob.type != "MESH":
        raise ConfigError(f"camera source object {name!r} is a {ob.type}, not a mesh")
    me = ob.data
    n = len(me.vertices)
    co = np.empty(n * 3, dtype=np.float64)
    me.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)
    if group:
        vg = ob.vertex_groups.get(group)
        if vg is None:
            raise ConfigError(f"object {name!r} has no vertex group {group!r} "
                              f"(it has: {', '.join(g.name for g in ob.vertex_groups) or 'none'})")
        keep = np.zeros(n, dtype=bool)
        for v in me.vertices:  # once per run, not per sample
            for g in v.groups:
                if g.group == vg.index and g.weight > 0:
                    keep[v.index] = True
        co = co[keep]
    if len(co) == 0:
        raise ConfigError(f"camera source {name!r}{' / ' + group if group else ''} has no vertices")
    m = np.array(ob.matrix_world, dtype=np.float64)
    return co @ m[:3, :3].T + m[:3, 3]


# --------------------------------------------------------------------------- lighting


def hdri_folder() -> Path | None:
    p = bpy.utils.system_resource("DATAFILES", path="studiolights/world")
    return Path(p) if p and Path(p).is_dir() else None


def available_hdris(names=()) -> dict[str, Path]:
    """Blender's bundled studio HDRIs (name -> path), optionally only ``names``."""
    folder = hdri_folder()
    found = {p.stem: p for p in sorted(folder.glob("*.exr"))} if folder else {}
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise ConfigError(f"studio HDRI(s) not found: {', '.join(missing)} "
                              f"(available: {', '.join(found) or 'none'})")
        found = {n: found[n] for n in names}
    return found


class HdriWorld:
    """The run's world: Environment Texture (rotated about Z) -> Background (strength)."""

    def __init__(self, scene: bpy.types.Scene, hdris: dict[str, Path], state: SceneState):
        if not hdris:
            raise ConfigError("no studio HDRI found in Blender's datafiles/studiolights/world; use --lighting scene")
        world = state.created(bpy.data.worlds.new(WORLD_NAME))
        if world.node_tree is None:  # Blender < 5: node trees are opt-in
            world.use_nodes = True
        nt = world.node_tree
        nt.nodes.clear()
        coord = nt.nodes.new("ShaderNodeTexCoord")
        mapping = nt.nodes.new("ShaderNodeMapping")
        env = nt.nodes.new("ShaderNodeTexEnvironment")
        bg = nt.nodes.new("ShaderNodeBackground")
        outn = nt.nodes.new("ShaderNodeOutputWorld")
        nt.links.new(coord.outputs["Generated"], mapping.inputs["Vector"])
        nt.links.new(mapping.outputs["Vector"], env.inputs["Vector"])
        nt.links.new(env.outputs["Color"], bg.inputs["Color"])
        nt.links.new(bg.outputs["Background"], outn.inputs["Surface"])
        self.images: dict[str, bpy.types.Image] = {}
        existing = {im.filepath for im in bpy.data.images}
        for name, path in hdris.items():
            im = bpy.data.images.load(str(path), check_existing=True)
            if str(path) not in existing:
                state.created(im)
            self.images[name] = im
        # Cycles rebuilds the world's importance map whenever the world changes (once per
        # expression here: the views of an expression share the lighting; persistent data
        # keeps it for the other views). The studio HDRIs have small bright sources. Measured
        # on MB-Lab, 256x256, 16 spp, FAST prefilter, PSNR against a 512 spp render (2-core
        # machine): MANUAL 1024 44.03 dB (~0.05 CPU-s per rebuild), 2048 44.78 dB (~0.35 CPU-s),
        # Blender's default AUTOMATIC (= 4096 for these HDRIs) 44.89 dB (~1.4 CPU-s). With
        # persistent data the map must be set before the first render: changing it later
        # is not picked up.
        if hasattr(world, "cycles"):
            world.cycles.sampling_method = "MANUAL"
            world.cycles.sample_map_resolution = WORLD_MAP_RESOLUTION
        self.world, self.env, self.bg, self.mapping = world, env, bg, mapping
        self._current = (None, None, None)
        state.set(scene, "world", world)

    def only_light(self, scene: bpy.types.Scene, state: SceneState) -> None:
        """Settings for a scene whose only light is this world (every light object is hidden
        by :func:`isolate_character`): Cycles' light tree costs traversal time and has nothing
        to choose between (same images; MB-Lab 256x256: +4..7 % samples/s,
        benchmarks/throughput.py)."""
        if scene.render.engine == "CYCLES" and hasattr(scene.cycles, "use_light_tree"):
            state.set(scene.cycles, "use_light_tree", False)

    def set(self, name: str, rotation_deg: float, strength: float) -> None:
        if self._current == (name, rotation_deg, strength):
            return
        if self._current[0] != name:
            self.env.image = self.images[name]
        self.mapping.inputs["Rotation"].default_value[2] = math.radians(rotation_deg)
        self.bg.inputs["Strength"].default_value = float(strength)
        self._current = (name, rotation_deg, strength)


def rotation_z(degrees: float) -> np.ndarray:
    """4x4 rotation about the world Z axis."""
    a = math.radians(float(degrees))
    c, s = math.cos(a), math.sin(a)
    m = np.eye(4)
    m[:2, :2] = ((c, -s), (s, c))
    return m


class CharacterTurntable:
    """Turns the lighting of an HDRI world without changing the world.

    Cycles rebuilds the world's importance map (0.2-0.3 s per change on 2 CPU cores at
    :data:`WORLD_MAP_RESOLUTION`) whenever anything in the world changes, so rotating the
    environment and scaling its strength per expression draw made every expression change pay
    for a rebuild. Lighting the character with the environment rotated by ``a`` about Z is the
    same as turning the character and the camera by ``a`` in a fixed environment, and scaling
    the strength of the only light by ``k`` is the same as scaling Cycles' film exposure
    (``scene.cycles.film_exposure``, a linear factor applied by the renderer) by ``k``. Not the
    view transform's exposure: every distinct value of that builds and keeps a colour-management
    processor (about 0.4 MiB per sample over a long run, measured by
    ``benchmarks/throughput.py --memory``).
    So the world stays as it is (only a change of HDRI rebuilds the map) and this class turns
    the character's top-level objects and gives the camera its turned matrix; the labels are
    computed in the scene's own frame, before the turn (``matrix`` maps that frame to the
    turned one).

    :meth:`check` verifies on the actual scene that turning the top-level objects turns every
    rendered object and the landmarks rigidly (not the case when a constraint or driver ties
    the character to something that does not turn); when it does not, the caller rotates the
    world instead.
    """

    def __init__(self, scene: bpy.types.Scene, obj: bpy.types.Object, state: SceneState):
        family = character_family(obj)
        objs = [scene.objects[n] for n in sorted(family) if n in scene.objects]
        self.roots = [ob for ob in objs if ob.parent is None or ob.parent.name not in family]
        self.rendered = [ob for ob in objs if not ob.hide_render and ob.type not in ("CAMERA", "LIGHT")]
        for ob in self.roots:  # restored by the state's snapshot too; recorded here for a restore on its own
            state.set(ob, "matrix_world", ob.matrix_world.copy())
        self.base = {ob.name: np.array(ob.matrix_world, dtype=np.float64) for ob in self.roots}
        self.angle = 0.0
        self.matrix = np.eye(4)
        self.exposure_base = float(scene.cycles.film_exposure)
        state.set(scene.cycles, "film_exposure", self.exposure_base)
        self.scene = scene

    def turn(self, degrees: float) -> None:
        """Put the character's top-level objects at their recorded matrices turned by ``degrees``."""
        degrees = float(degrees)
        if degrees == self.angle:
            return
        m = rotation_z(degrees)
        for ob in self.roots:
            set_matrix_world(ob, m @ self.base[ob.name])
        self.angle, self.matrix = degrees, m

    def set_strength(self, strength: float) -> bool:
        """Cycles film exposure for a world strength of ``strength`` (False for 0: the caller
        sets the world's strength itself)."""
        cyc = self.scene.cycles
        if strength <= 0:
            cyc.film_exposure = self.exposure_base
            return False
        exposure = self.exposure_base * float(strength)
        # the property is single precision: compare as such, or every view would write it
        # again (each write tags the scene for Cycles to re-synchronise)
        if abs(cyc.film_exposure - exposure) > 1e-6 * max(abs(exposure), 1e-6):
            cyc.film_exposure = exposure
        return True

    def check(self, evaluate, degrees: float = 137.0, tol: float = 1e-5) -> str | None:
        """None when turning by ``degrees`` moves the landmarks and every rendered object of
        the character rigidly (within ``tol`` metres), else what did not follow.
        ``evaluate()`` returns the (N, 3) world landmarks of the current scene state."""
        if not self.roots:
            return "the character has no top-level object to turn"

        def matrices():
            dg = bpy.context.evaluated_depsgraph_get()
            return {ob.name: np.array(ob.evaluated_get(dg).matrix_world, dtype=np.float64) for ob in self.rendered}

        lm0, mats0 = np.asarray(evaluate(), dtype=np.float64), matrices()
        self.turn(degrees)
        try:
            lm1, mats1 = np.asarray(evaluate(), dtype=np.float64), matrices()
        finally:
            self.turn(0.0)
        m = rotation_z(degrees)
        err = float(np.abs(lm0 @ m[:3, :3].T - lm1).max()) if len(lm0) else 0.0
        if err > tol:
            return f"the landmarks moved {err:.2g} m away from a rigid turn"
        for name, a in mats0.items():
            if np.abs(m @ a - mats1[name]).max() > tol:
                return f"object {name!r} did not turn with the character"
        return None


def character_family(obj: bpy.types.Object) -> set[str]:
    """Names of the objects that belong to the character: the hierarchy under its top-most
    parent (e.g. an MB-Lab armature with the body, eyes, teeth, hair), and the armature
    that deforms it."""
    root = obj
    while root.parent is not None:
        root = root.parent
    names = {root.name, obj.name, *(c.name for c in root.children_recursive)}
    arm = obj.find_armature()
    if arm is not None:
        names.add(arm.name)
        names.update(c.name for c in arm.children_recursive)
    return names


def isolate_character(scene: bpy.types.Scene, obj: bpy.types.Object, keep_lights: bool,
                      state: SceneState) -> list[str]:
    """Hide from the render everything that is not the character (and, with scene
    lighting, its lights): another object in front of the face would hide landmarks that
    the labels call visible. MB-Lab's FACS slider widgets are hidden too. Returns the names
    hidden (restored by ``state``)."""
    family = character_family(obj)
    hidden = []
    for ob in scene.objects:
        if ob.type == "CAMERA" or ob.hide_render:
            continue
        keep = ob.name in family and not ob.name.lower().startswith(_RIG_PREFIXES)
        if ob.type == "LIGHT":
            keep = keep_lights
        if not keep:
            state.set(ob, "hide_render", True)
            hidden.append(ob.name)
    return hidden
