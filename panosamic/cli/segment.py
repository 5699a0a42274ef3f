"""``panosamic segment``: segment a panorama from files and write pictures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_VARIANT = "stanford2d3ds-vitb-rgbdn-fold1"
DEMO_DEPTH_MAX = 10.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment a panorama (RGB, optional depth and normals) and write pictures",
        description=(
            "Segment an equirectangular panorama with a published or local checkpoint. Writes "
            "<name>.labels.png (class index per pixel), <name>.color.png, <name>.overlay.png, "
            "<name>.panel.png (input, result and legend), <name>.instances.png (with instance "
            "masks) and <name>.json (classes and their share of pixels)."
        ),
    )
    source = parser.add_argument_group("input")
    source.add_argument("image", nargs="?", type=Path, help="RGB panorama (any 2:1 size)")
    source.add_argument(
        "--demo", action="store_true", help="segment a synthetic room instead of a file"
    )
    source.add_argument("--depth", type=Path, help="depth map: 16-bit PNG or float .npy")
    source.add_argument(
        "--depth-scale",
        type=float,
        help="raw depth units per metre (Stanford 512, Matterport 4000, Structured3D 1000)",
    )
    source.add_argument(
        "--depth-max",
        type=float,
        help="d_t in metres: depth at or beyond it maps to 0 (the checkpoint's training value)",
    )
    source.add_argument(
        "--depth-invalid",
        type=float,
        default=0.0,
        help="raw value of pixels without depth (default 0; Stanford 65535)",
    )
    source.add_argument(
        "--normals", type=Path, help="normals image (RGB encoding, as in the dataset)"
    )
    source.add_argument(
        "--normals-from-depth", action="store_true", help="compute the normals image from --depth"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--checkpoint",
        default="dfki-av/PanoSAMic",
        help="Hub repo id, Hub-layout directory, run directory or file",
    )
    model.add_argument(
        "--variant",
        default=None,
        help=f"sub-folder of the checkpoint (default for the Hub: {DEFAULT_VARIANT})",
    )
    model.add_argument("--config", default=None, help="JSON config (file or config/<name>.json)")
    model.add_argument("--vit-model", choices=("vit_b", "vit_l", "vit_h"), default=None)
    model.add_argument(
        "--sam-weights", default=None, help="SAM .pth file or directory (default: cache/download)"
    )
    model.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    model.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    model.add_argument("--no-instances", action="store_true", help="semantic path only (faster)")

    inst = parser.add_argument_group("instance masks (ignored with --no-instances)")
    inst.add_argument(
        "--no-refine",
        action="store_true",
        help="keep the raw semantic labels (default: majority vote inside each instance mask)",
    )
    inst.add_argument(
        "--points-per-side", type=int, default=None, help="SAM point grid per side (default 32)"
    )
    inst.add_argument(
        "--point-grid",
        choices=("canvas", "image"),
        default=None,
        help="'image' skips the grid points in the canvas padding (half the work at 2:1)",
    )
    inst.add_argument(
        "--instance-modalities",
        nargs="+",
        default=None,
        metavar="MODALITY",
        help="modalities that get instance masks (default: all)",
    )
    inst.add_argument(
        "--exact-decoder",
        action="store_true",
        help="SAM's mask decoder in SAM's operation order, bit for bit (about twice as slow; "
        "default: the factored decoder, the same masks up to float32 round-off)",
    )
    inst.add_argument("--quiet", action="store_true", help="no progress bar")

    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("panosamic_out"), help="output directory")
    out.add_argument(
        "--class-names",
        default=None,
        help="dataset whose class names and count to use (default: from the variant)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..weights import load_panosamic

    name, rgb, inputs = _read_inputs(args)
    variant = args.variant or (DEFAULT_VARIANT if args.checkpoint == "dfki-av/PanoSAMic" else None)
    model = load_panosamic(
        args.checkpoint,
        subfolder=variant,
        config_path=args.config,
        vit_model=args.vit_model,
        sam_weights_path=args.sam_weights,
        semantic_only=args.no_instances,
        precision=args.precision,
        device=args.device,
    )
    missing = [m for m in model.config.modalities if m not in inputs]
    if missing:
        raise ValueError(
            f"this checkpoint needs {list(model.config.modalities)}; missing {missing}: pass --{missing[0]}"
        )
    instances = not args.no_instances
    if instances:
        model.set_amg(**_amg_changes(args))
    batch = [{m: inputs[m] for m in model.config.modalities}]
    refine = instances and not args.no_refine
    with torch.inference_mode():
        (output,) = model(batch, refine=refine, progress=instances and not args.quiet)
    logits = output["refined_sem_preds"] if refine else output["sem_preds"]
    labels = logits.argmax(0).cpu().numpy().astype(np.int64)
    masks = [m["segmentation"].cpu().numpy() for m in output.get("instance_masks", [])]
    class_names = _class_names(args.class_names, variant, model.config.num_classes)
    written = write_pictures(args.out, name, rgb, labels, masks, class_names, refined=refine)
    for path in written:
        print(path)
    return 0


def _amg_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The instance-path settings given on the command line (the rest keep their defaults)."""
    changes = {
        "points_per_side": args.points_per_side,
        "point_grid": args.point_grid,
        "modalities": args.instance_modalities,
        "decoder": "exact" if args.exact_decoder else None,
    }
    return {key: value for key, value in changes.items() if value is not None}


def _read_inputs(args: argparse.Namespace) -> tuple[str, Any, dict[str, Any]]:
    """(name, RGB uint8 (H, W, 3), {modality: float tensor (3, H, W) in [0, 255]})."""
    import numpy as np
    import torch

    from ..data.files import read_rgb
    from ..data.normals import read_depth_file

    if args.demo == (args.image is not None):
        raise ValueError("give either an image path or --demo")
    if args.demo:
        from ..data.synth import render_room

        room = render_room(seed=0, height=512, width=1024, dataset="stanford2d3ds")
        rgb, depth, valid = room.rgb, room.depth.astype(np.float64), room.valid & (room.depth > 0)
        depth_max = args.depth_max or DEMO_DEPTH_MAX
        name = "demo"
    else:
        rgb = read_rgb(args.image)
        name = args.image.stem
        depth = valid = None
        depth_max = args.depth_max
        if args.depth is not None:
            if args.depth_scale is None or args.depth_max is None:
                raise ValueError(
                    "--depth needs --depth-scale (units per metre) and --depth-max (d_t in metres)"
                )
            raw, valid = read_depth_file(args.depth, invalid_value=args.depth_invalid)
            depth = raw / args.depth_scale
            if depth.shape != rgb.shape[:2]:
                raise ValueError(f"depth {depth.shape} and image {rgb.shape[:2]} differ in size")
    inputs: dict[str, Any] = {"image": _tensor(rgb)}
    if depth is not None:
        disparity = (1.0 - np.clip(depth, 0.0, depth_max) / depth_max) * valid * 255.0
        inputs["depth"] = torch.from_numpy(np.repeat(disparity[None], 3, 0).astype(np.float32))
    normals = _normals(args, depth, valid, rgb.shape[:2])
    if normals is not None:
        inputs["normals"] = _tensor(normals)
    return name, rgb, inputs


def _normals(args: argparse.Namespace, depth, valid, shape) -> Any:
    from ..data.files import read_rgb
    from ..data.normals import normals_image_from_depth

    if args.normals is not None:
        normals = read_rgb(args.normals)
        if normals.shape[:2] != shape:
            raise ValueError(f"normals {normals.shape[:2]} and image {shape} differ in size")
        return normals
    if args.normals_from_depth or args.demo:
        if depth is None:
            raise ValueError("--normals-from-depth needs --depth")
        return normals_image_from_depth(depth, valid)
    return None


def _tensor(image) -> Any:
    import numpy as np
    import torch

    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)).astype(np.float32))


def _class_names(dataset: str | None, variant: str | None, num_classes: int) -> list[str]:
    from ..data.catalog import DATASET_CLASS_NAMES
    from ..weights import parse_variant_name

    dataset = dataset or parse_variant_name(variant).dataset
    names = DATASET_CLASS_NAMES.get(dataset) if dataset else None
    if names is not None and len(names) != num_classes:
        raise ValueError(f"{dataset} has {len(names)} classes but the model predicts {num_classes}")
    return list(names) if names else [f"class {k}" for k in range(num_classes)]


def write_pictures(
    out_dir: Path,
    name: str,
    rgb,
    labels,
    masks: list,
    class_names: list[str],
    refined: bool = False,
) -> list[Path]:
    """Write the labels, colour map, overlay, panel, instances and summary of one panorama."""
    import numpy as np

    from ..data.catalog import make_palette
    from ..data.files import atomic_write_json
    from ..visualize import colorize, instance_map, legend, overlay, save_rgb, stack, titled

    palette = make_palette(len(class_names))
    colours = colorize(labels, palette)
    fractions = np.bincount(labels.ravel(), minlength=len(class_names)) / labels.size
    blended = overlay(rgb, colours)
    paths = {
        kind: out_dir / f"{name}.{kind}.png" for kind in ("labels", "color", "overlay", "panel")
    }
    save_rgb(labels.astype(np.uint8), paths["labels"])
    save_rgb(colours, paths["color"])
    save_rgb(blended, paths["overlay"])
    rows = [titled(rgb, "input"), titled(colours, "semantic classes"), titled(blended, "overlay")]
    if masks:
        paths["instances"] = out_dir / f"{name}.instances.png"
        picture = instance_map(masks, labels.shape)
        save_rgb(picture, paths["instances"])
        rows.append(titled(picture, f"{len(masks)} instance masks"))
    rows.append(legend(class_names, palette, fractions, rgb.shape[1]))
    save_rgb(stack(rows), paths["panel"])
    summary = {
        "classes": {class_names[k]: float(fractions[k]) for k in np.flatnonzero(fractions)},
        "instance_masks": len(masks),
        "refined_with_instances": refined,
        "size": list(labels.shape),
    }
    paths["json"] = out_dir / f"{name}.json"
    atomic_write_json(paths["json"], summary)
    return list(paths.values())
