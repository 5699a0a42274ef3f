"""Speed of the instance path on a real-size ViT-B RGB-D-N dual-view model (random weights).

Runs SAM's automatic mask generation, the cross-modality merge and the
dual-view fusion on one 512 x 1024 panorama and prints the seconds per stage
(table and JSON), the candidate counts per filter, and, with ``--reference``,
the same work in the reference's order (SAM's ``MaskDecoder`` on batches of
64 points, every candidate upsampled to the canvas before filtering) with a
check that both give identical masks.

A SAM mask decoder with random weights is rarely confident: its predicted
IoUs sit near 0 and its masks near the 0 logit, so nothing passes the
reference thresholds and the filters have no work. Two settings make the run
meaningful, and both are reported:

- ``confident``: the reference thresholds; the mask decoder's upscaling and
  hypernetwork weights are scaled up (sharp masks, as in the golden fixture)
  and the IoU head's last layer is calibrated to predict 0.88 +- 0.05 (about
  half of the candidates pass the IoU filter, most of those the stability
  filter);
- ``lowered``: the random weights as they are, the thresholds lowered
  (``pred_iou_thresh`` 0, ``stability_score_thresh`` 0: every non-empty mask).

Usage::

    PYTHONPATH=. python benchmarks/bench_instances.py                   # both settings, fast path
    PYTHONPATH=. python benchmarks/bench_instances.py --reference embedding  # + reference on one embedding
    PYTHONPATH=. python benchmarks/bench_instances.py --setting confident --reference full --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from panosamic.benchmark import BenchConfig, environment, random_model, random_panorama
from panosamic.instances.amg import (
    Probe,
    Upsampling,
    encode_points,
    generate_masks,
    point_grid,
    prompt_context,
    prompt_decoder,
    stability_scores,
)
from panosamic.instances.exact_decoder import ExactMaskDecoder
from panosamic.instances.mask_decoding import prompt_slices
from panosamic.instances.pipeline import STAGES
from panosamic.instances.workspace import Workspace
from panosamic.model import PanoSAMic
from panosamic.utils.profiling import StageTimer
from tests.instances_reference import amg_reference, reference_masks

SETTINGS = ("confident", "lowered")
UPSCALE = 20.0
IOU_SPREAD = 0.05
REFERENCE_SECONDS = 532.0 - 68.0  # the reference's instance path, ViT-B RGB-D-N dual view, 2 cores


def make_confident(model: PanoSAMic, neck: torch.Tensor, seed: int) -> None:
    """Sharp masks, and predicted IoUs spread around the 0.88 threshold per prompt.

    The mask decoder gets PyTorch's default initialisation (fan-in scaled,
    closer to trained weights than the benchmark's 0.02 normal), its
    upscaling and hypernetwork weights are multiplied by ``UPSCALE`` (sharp
    masks: about half pass the stability filter), and the IoU head's last
    layer is calibrated on 64 grid prompts so that each mask token's
    prediction has mean 0.88 and spread ``IOU_SPREAD`` across prompts.
    """
    dec = model.mask_decoder
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in dec.modules():
            if module is not dec and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name, p in dec.named_parameters():
            if name.startswith(("output_upscaling", "output_hypernetworks_mlps")) and p.dim() > 1:
                p.mul_(UPSCALE)
        last = dec.iou_prediction_head.layers[-1]
        seen: list[torch.Tensor] = []
        hook = last.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
        amg = model.config.amg
        points = point_grid(amg, model.config.encoder.img_size, model.config.input_size)
        sparse = encode_points(model.prompt_encoder, points[:: max(1, len(points) // 64)][:64], 64)
        pe, dense = prompt_context(model.prompt_encoder)
        ExactMaskDecoder(dec, neck[:1], pe, dense).run_transformer(sparse)
        hook.remove()
        raw = seen[0] @ last.weight.T  # (prompts, tokens)
        last.weight.mul_((IOU_SPREAD / raw.std(0).clamp(min=1e-12))[:, None])
        last.bias.copy_(0.88 - (seen[0] @ last.weight.T).mean(0))


def amg_changes(setting: str, args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "points_per_side": args.points_per_side,
        "point_grid": args.grid,
        "decoder": args.decoder,
    }
    if args.amg_modalities:
        changes["modalities"] = tuple(args.amg_modalities.split(","))
    if args.min_region_area:
        changes["min_mask_region_area"] = args.min_region_area
    if setting == "lowered":
        changes |= {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}
    return changes


def stage_seconds(timer: StageTimer) -> dict[str, float]:
    out = {}
    for name, values in timer.seconds.items():
        out[name.removeprefix("instances.")] = sum(values)
    return {name: round(out.get(name, 0.0), 3) for name in STAGES}


def compare_masks(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Whether two mask lists hold the same masks and areas in the same order, and how far
    their scores differ."""
    same = len(a) == len(b) and all(
        torch.equal(x["segmentation"], y["segmentation"]) and x["area"] == y["area"]
        for x, y in zip(a, b, strict=True)
    )
    score_diff = max(
        (
            abs(x[k] - y[k])
            for x, y in zip(a, b, strict=False)
            for k in ("predicted_iou", "stability_score")
        ),
        default=0.0,
    )
    return {"identical_masks": same, "max_score_difference": score_diff}


def run_fast(model: PanoSAMic, neck: torch.Tensor, size: tuple[int, int]) -> dict[str, Any]:
    timer, counts = StageTimer(), {}
    model.stage_timer = timer
    start = time.perf_counter()
    (masks,) = model.instance_masks(neck, [size], counts=counts, progress=True)
    total = time.perf_counter() - start
    model.stage_timer = None
    return {
        "seconds": round(total, 2),
        "stages": stage_seconds(timer),
        "counts": counts,
        "masks": masks,
    }


def run_reference_full(
    model: PanoSAMic, neck: torch.Tensor, size: tuple[int, int]
) -> dict[str, Any]:
    """The whole instance path in the reference's order (the test oracle)."""
    timer, probe = StageTimer(), Probe()
    probe.stage = lambda name: timer.stage(name, neck.device)
    start = time.perf_counter()
    (masks,) = reference_masks(model, neck, [size], probe)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "stages": stage_seconds(timer),
        "counts": probe.counts,
        "masks": masks,
    }


def run_one_embedding(
    model: PanoSAMic, neck: torch.Tensor, size: tuple[int, int]
) -> dict[str, Any]:
    """Fast and reference order on the first embedding (image, unshifted view) only."""
    cfg = model.config
    amg, canvas, net = cfg.amg, cfg.encoder.img_size, cfg.input_size
    emb = neck[:1]
    out: dict[str, Any] = {}
    with torch.no_grad():
        fast_timer, fast_counts = StageTimer(), Probe()
        fast_counts.stage = lambda name: fast_timer.stage(name, neck.device)
        start = time.perf_counter()
        with fast_counts.stage("prompt_encoding"):
            sparse = encode_points(
                model.prompt_encoder, point_grid(amg, canvas, net), amg.points_per_batch
            )
            pe, dense = prompt_context(model.prompt_encoder)
        with fast_counts.stage("mask_decoder"):
            decoder = prompt_decoder(amg, model.mask_decoder, emb, pe, dense)
        fast = generate_masks(decoder, sparse, amg, canvas, net, size, fast_counts).to_dicts()
        out["fast"] = {
            "seconds": round(time.perf_counter() - start, 2),
            "stages": stage_seconds(fast_timer),
            "counts": fast_counts.counts,
        }
        ref_timer = StageTimer()
        probe = Probe(stage=lambda name: ref_timer.stage(name, neck.device))
        start = time.perf_counter()
        ref = amg_reference(
            model.prompt_encoder, model.mask_decoder, emb, amg, canvas, net, size, probe
        )
        out["reference"] = {
            "seconds": round(time.perf_counter() - start, 2),
            "stages": stage_seconds(ref_timer),
        }
    out |= compare_masks(fast, ref)
    out["masks"] = len(fast)
    out["speedup"] = round(out["reference"]["seconds"] / out["fast"]["seconds"], 2)
    return out


def compare_decoders(model: PanoSAMic, neck: torch.Tensor, size: tuple[int, int]) -> dict[str, Any]:
    """Every candidate of the first embedding through the factored and the exact decoder:
    how often the filter decisions and the candidates' mask pixels differ."""
    cfg = model.config
    amg, canvas, net = cfg.amg, cfg.encoder.img_size, cfg.input_size
    sparse = encode_points(model.prompt_encoder, point_grid(amg, canvas, net), amg.points_per_batch)
    pe, dense = prompt_context(model.prompt_encoder)
    tokens = slice(1, None) if amg.multimask_output else slice(0, 1)
    upsampling = Upsampling(canvas, net, size, None, Workspace(neck))
    out = {"candidates": 0, "iou_decisions_differ": 0, "stability_decisions_differ": 0}
    out |= {
        "stable_in_both": 0,
        "pixels_compared": 0,
        "pixels_differ": 0,
        "max_iou_difference": 0.0,
    }
    decoders = [
        prompt_decoder(replace(amg, decoder=kind), model.mask_decoder, neck[:1], pe, dense)
        for kind in ("factored", "exact")
    ]
    with torch.no_grad():
        for sl in prompt_slices(sparse.shape[0], amg.points_per_batch):
            fast, exact = (d.run_transformer(sparse[sl]) for d in decoders)
            iou_f, iou_e = fast.iou[:, tokens], exact.iou[:, tokens]
            out["candidates"] += iou_f.numel()
            out["max_iou_difference"] = max(
                out["max_iou_difference"], float((iou_f - iou_e).abs().max())
            )
            passed_f, passed_e = iou_f >= amg.pred_iou_thresh, iou_e >= amg.pred_iou_thresh
            out["iou_decisions_differ"] += int((passed_f != passed_e).sum())
            prompts = torch.nonzero((passed_f & passed_e).any(1)).flatten()
            if len(prompts) == 0:
                continue
            both = (passed_f & passed_e)[prompts]
            low_f = decoders[0].masks(fast, prompts)[:, tokens][both]
            low_e = decoders[1].masks(exact, prompts)[:, tokens][both]
            for i in range(0, len(low_f), 4):
                logits_f = upsampling(low_f[i : i + 4]).clone()
                logits_e = upsampling(low_e[i : i + 4])
                stable_f = stability_scores(logits_f, amg) >= amg.stability_score_thresh
                stable_e = stability_scores(logits_e, amg) >= amg.stability_score_thresh
                out["stability_decisions_differ"] += int((stable_f != stable_e).sum())
                kept = stable_f & stable_e
                masks_f = logits_f[kept] > amg.mask_threshold
                masks_e = logits_e[kept] > amg.mask_threshold
                out["stable_in_both"] += int(kept.sum())
                out["pixels_compared"] += masks_f.numel()
                out["pixels_differ"] += int((masks_f != masks_e).sum())
    return out


def format_table(setting: str, result: dict[str, Any]) -> str:
    columns = [("fast", result["fast"])] if "fast" in result else []
    if "reference" in result:
        columns.append(("reference order", result["reference"]))
    if "one_embedding" in result:
        one = result["one_embedding"]
        columns += [("1 emb. fast", one["fast"]), ("1 emb. reference", one["reference"])]
    head = f"{'stage':18s}" + "".join(f"{name:>18s}" for name, _ in columns)
    lines = [f"setting '{setting}': {result['description']}", head]
    for stage in STAGES:
        lines.append(
            f"{stage:18s}" + "".join(f"{col['stages'].get(stage, 0.0):18.2f}" for _, col in columns)
        )
    lines.append(f"{'total':18s}" + "".join(f"{col['seconds']:18.2f}" for _, col in columns))
    if "fast" in result:
        counts = result["fast"]["counts"]
        lines.append(
            "candidates: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f"; final masks {result['fast']['final_masks']}"
        )
    if "reference" in result:
        lines.append(
            f"reference order / fast: {result['speedup']:.2f}x, identical masks: "
            f"{result['identical_masks']}, largest score difference {result['max_score_difference']:.2g}"
        )
    if "one_embedding" in result:
        one = result["one_embedding"]
        lines.append(
            f"one embedding: reference order / fast {one['speedup']:.2f}x, identical masks: "
            f"{one['identical_masks']}, largest score difference {one['max_score_difference']:.2g}; "
            "candidates: " + ", ".join(f"{k} {v}" for k, v in one["fast"]["counts"].items())
        )
    if "fast" in result:
        lines.append(
            f"reference implementation, measured ({REFERENCE_SECONDS:.0f} s) / fast: "
            f"{REFERENCE_SECONDS / result['fast']['seconds']:.2f}x (comparable for the 'confident' setting)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setting", choices=(*SETTINGS, "both"), default="both")
    parser.add_argument("--reference", choices=("none", "embedding", "full"), default="none")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--grid", choices=("canvas", "image"), default="canvas")
    parser.add_argument(
        "--decoder", choices=("factored", "exact"), default="factored", help="amg decoder"
    )
    parser.add_argument("--amg-modalities", default="", help="e.g. 'image' (default: all)")
    parser.add_argument("--min-region-area", type=int, default=0)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--compare-decoders",
        action="store_true",
        help="how often the factored and the exact decoder disagree on one embedding's candidates",
    )
    parser.add_argument(
        "--no-full", action="store_true", help="with --reference embedding: skip the full fast run"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = BenchConfig(instances=True, height=args.height, seed=args.seed)
    batch = random_panorama(cfg)
    size = (args.height, 2 * args.height)
    results: dict[str, Any] = {
        "environment": environment(),
        "args": vars(args) | {"json": str(args.json)},
    }
    for setting in SETTINGS if args.setting == "both" else (args.setting,):
        model = random_model(cfg)
        model.set_amg(**amg_changes(setting, args))
        start = time.perf_counter()
        with torch.no_grad():
            neck = model.forward_features(batch, keep_neck=True, keep_all=False)["encoder_neck"]
        encoder_seconds = time.perf_counter() - start
        if setting == "confident":
            make_confident(model, neck, args.seed)
        result: dict[str, Any] = {
            "description": ", ".join(f"{k}={v}" for k, v in amg_changes(setting, args).items()),
            "encoder_and_semantic_seconds": round(encoder_seconds, 2),
        }
        if args.no_full:
            fast_masks = []
        else:
            fast = run_fast(model, neck, size)
            fast_masks = fast.pop("masks")
            fast["final_masks"] = len(fast_masks)
            result["fast"] = fast
        if args.reference == "full":
            ref = run_reference_full(model, neck, size)
            ref_masks = ref.pop("masks")
            result["reference"] = ref
            result |= compare_masks(fast_masks, ref_masks)
            result["speedup"] = round(ref["seconds"] / fast["seconds"], 2)
        elif args.reference == "embedding":
            result["one_embedding"] = run_one_embedding(model, neck, size)
        if args.compare_decoders:
            result["decoders"] = compare_decoders(model, neck, size)
            print("factored vs exact decoder, first embedding:", result["decoders"], flush=True)
        results[setting] = result
        print(format_table(setting, result), flush=True)
        print(flush=True)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json is not None:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
