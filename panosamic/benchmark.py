"""Speed and memory of a real-size PanoSAMic with random weights (``panosamic bench``).

It reports this machine's own figures only. A comparison with the reference
implementation is a side-by-side run on one machine
(``benchmarks/bench_reference.py``); the other scripts in ``benchmarks/`` time
single stages (the instance path, data loading) or GPUs.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch

from .hub.catalog import PUBLISHED_FUSION
from .model.config import EncoderConfig, model_config_from_dict, with_channel_attention
from .model.image_encoder import LayerNorm2d
from .model.panosamic import PanoSAMic
from .utils.profiling import StageTimer


@dataclass
class BenchConfig:
    vit_model: str = "vit_b"
    modalities: tuple[str, ...] = ("image", "depth", "normals")
    dual_view: bool = True
    channel_attention: str = "eca"
    num_classes: int = 13
    instances: bool = False
    precision: str = "fp32"
    device: str = "cpu"
    repeats: int = 3
    warmup: int = 1
    height: int = 512
    seed: int = 0
    tiny: bool = False  # the golden fixtures' tiny encoder instead of vit_model (smoke tests)


TINY_ENCODER = EncoderConfig(
    img_size=256, patch_size=16, embed_dim=64, depth=4, num_heads=4, window_size=6,
    global_attn_indexes=(1, 3), out_chans=32,
)  # fmt: skip


@dataclass
class BenchResult:
    config: dict[str, Any]
    seconds: list[float]
    median_seconds: float
    stages: dict[str, float]
    peak_rss_gb: float
    rss_after_build_gb: float
    peak_cuda_gb: float | None = None
    agreement_with_fp32: float | None = None
    # cores used by other processes during the timed runs (a busy machine inflates times)
    other_load_cores: float | None = None
    environment: dict[str, Any] = field(default_factory=dict)


def encoder_flops(config: Any, images: int = 1) -> float:
    """Multiply-add FLOPs (2 per MAC) of the image encoder for ``images`` panoramas: every
    modality in every view is one pass over the canvas (linear layers, attention, neck)."""
    enc = config.encoder
    n, e = enc.grid_size**2, enc.embed_dim
    linear = 2 * n * e * e * (4 + 2 * enc.mlp_ratio)  # q, k, v, proj and the MLP
    window = enc.window_size
    padded = -(-enc.grid_size // window) * window
    windowed = (padded // window) ** 2 * 4 * window**4 * e
    blocks = sum(
        linear + (4 * n * n * e if i in enc.global_attn_indexes else windowed)
        for i in range(enc.depth)
    )
    neck = 2 * n * enc.out_chans * (e + 9 * enc.out_chans)
    passes = images * config.num_views * len(config.modalities)
    return float(passes * (blocks + neck))


# The instance path's work per embedding and 1024 point prompts, in FLOPs of matrix-product
# time: measured 20 s on a 2-core CPU whose float32 products run at 170 GFLOP/s (ViT-B widths).
INSTANCE_FLOPS_PER_1024_PROMPTS = 20 * 170e9


def instance_path_flops(config: Any, images: int = 1) -> float:
    """The instance path's work for ``images`` panoramas, in the units of :func:`encoder_flops`."""
    amg, enc = config.amg, config.encoder
    prompts = amg.points_per_side**2 * (0.5 if amg.point_grid == "image" else 1.0)
    embeddings = images * config.num_views * len(amg.modalities or config.modalities)
    # the transformer scales with the token width, the mask work with the canvas area
    size = 0.5 * enc.out_chans / 256 + 0.5 * (enc.img_size / 1024) ** 2
    return embeddings * prompts / 1024 * INSTANCE_FLOPS_PER_1024_PROMPTS * size


def random_model(cfg: BenchConfig) -> PanoSAMic:
    """A real-size model with small random weights (no files needed), in eval mode."""
    fusion = with_channel_attention(PUBLISHED_FUSION, cfg.channel_attention)
    fusion["dual_view_fusion"] = cfg.dual_view
    if cfg.tiny:
        fusion["encoder"] = asdict(TINY_ENCODER)
    config = model_config_from_dict(
        fusion, vit_model=cfg.vit_model, modalities=cfg.modalities, num_classes=cfg.num_classes
    )
    with torch.device("meta"):
        model = PanoSAMic(config, semantic_only=not cfg.instances, precision=cfg.precision)
    model = model.to_empty(device=cfg.device)
    generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
    with torch.no_grad():
        for module in model.modules():
            norm = isinstance(module, (torch.nn.LayerNorm, LayerNorm2d))
            for name, tensor in module.named_parameters(recurse=False):
                if norm:
                    tensor.fill_(1.0 if name == "weight" else 0.0)
                elif name == "bias":
                    tensor.zero_()
                else:
                    tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.02)
            for tensor in module.buffers(recurse=False):
                tensor.copy_(torch.randn(tensor.shape, generator=generator))
    return model.eval()


def random_panorama(cfg: BenchConfig) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    h = cfg.height
    return [{m: torch.rand(3, h, 2 * h, generator=generator) * 255 for m in cfg.modalities}]


def _rss_gb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1e6
    return float("nan")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def cpu_counters() -> tuple[float, float] | None:
    """(busy seconds of all CPUs, this process's CPU seconds) now; None without ``/proc/stat``.

    Between two readings, the first difference minus the second is the CPU time
    other processes took: a measure of how busy the machine was meanwhile.
    """
    try:
        with open("/proc/stat") as fh:
            ticks = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = sum(ticks[3:5])  # idle, iowait
    guests = sum(ticks[8:10])  # already counted in user and nice
    busy = (sum(ticks) - idle - guests) / os.sysconf("SC_CLK_TCK")
    return busy, sum(os.times()[:2])


def other_load(before: tuple[float, float] | None, wall_seconds: float) -> float | None:
    """Cores other processes used on average since ``before`` (a :func:`cpu_counters` reading)."""
    after = cpu_counters()
    if before is None or after is None or wall_seconds <= 0:
        return None
    return max(0.0, ((after[0] - before[0]) - (after[1] - before[1])) / wall_seconds)


def _timed_runs(
    model: PanoSAMic, cfg: BenchConfig, step, label: str, progress: bool
) -> dict[str, Any]:
    """Warm-up, then ``cfg.repeats`` timed calls of ``step()``; times, stages and memory."""
    device = torch.device(cfg.device)
    rss_after_build = _rss_gb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timer = StageTimer()
    seconds = []
    counters = None
    for i in range(cfg.warmup + cfg.repeats):
        timed = i >= cfg.warmup
        model.stage_timer = timer if timed else None
        if i == cfg.warmup:
            counters = cpu_counters()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if timed:
            seconds.append(elapsed)
        if progress:
            print(f"  {label if timed else 'warm-up'} {i + 1}: {elapsed:.2f} s", flush=True)
    model.stage_timer = None
    cuda = device.type == "cuda"
    return {
        "seconds": seconds,
        "median_seconds": statistics.median(seconds),
        "stages": {name: sum(values) / cfg.repeats for name, values in timer.seconds.items()},
        "peak_rss_gb": _peak_rss_gb(),
        "rss_after_build_gb": rss_after_build,
        "peak_cuda_gb": torch.cuda.max_memory_allocated(device) / 1e9 if cuda else None,
        "other_load_cores": other_load(counters, sum(seconds)),
        "environment": environment(),
    }


def run_benchmark(
    cfg: BenchConfig, compare_fp32: bool = False, progress: bool = True
) -> BenchResult:
    """Warm-up, then ``repeats`` timed forwards of one panorama."""
    model = random_model(cfg)
    batch = random_panorama(cfg)
    outputs: list = []

    def forward() -> None:
        with torch.inference_mode():
            outputs[:] = model(batch, semantic_only=not cfg.instances)

    result = BenchResult(config=asdict(cfg), **_timed_runs(model, cfg, forward, "run", progress))
    if compare_fp32 and cfg.precision != "fp32":
        result.agreement_with_fp32 = _agreement_with_fp32(model, batch, outputs)
    return result


def run_train_step(
    cfg: BenchConfig, checkpointing: bool = False, progress: bool = True
) -> BenchResult:
    """Time forward + backward + SGD step of the trainable parts (frozen encoder) on one panorama."""
    model = random_model(cfg).train()
    model.gradient_checkpointing = checkpointing
    batch = random_panorama(cfg)
    generator = torch.Generator().manual_seed(cfg.seed + 2)
    target = torch.randint(0, cfg.num_classes, (1, cfg.height, 2 * cfg.height), generator=generator)
    target = target.to(cfg.device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch, semantic_only=True)[0]["sem_preds"][None]
        loss = torch.nn.functional.cross_entropy(logits, target)
        with model.stage("backward"):
            loss.backward()
        optimizer.step()

    config = asdict(cfg) | {"train_step": True, "checkpointing": checkpointing}
    return BenchResult(config=config, **_timed_runs(model, cfg, train_step, "step", progress))


def _agreement_with_fp32(model: PanoSAMic, batch, outputs) -> float:
    low = outputs[0]["sem_preds"].argmax(0)
    model.precision = "fp32"
    with torch.inference_mode():
        full = model(batch, semantic_only=True)[0]["sem_preds"].argmax(0)
    return float((low == full).float().mean())


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Where a figure was measured: processor, cores, threads, torch, date."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "processor": cpu_name(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name()
    return info


def format_table(result: BenchResult) -> str:
    cfg = result.config
    kind = "training step" if cfg.get("train_step") else "forward"
    lines = [
        f"PanoSAMic {kind}: {'tiny encoder' if cfg['tiny'] else cfg['vit_model']} {'+'.join(cfg['modalities'])} "
        f"{'dual' if cfg['dual_view'] else 'single'} view, {'with' if cfg['instances'] else 'no'} instances, "
        f"{cfg['precision']}, {cfg['device']}, {cfg['height']}x{2 * cfg['height']}",
        f"  median {kind:13s}{result.median_seconds:8.2f} s   (runs: {', '.join(f'{s:.2f}' for s in result.seconds)})",
    ]
    width = max([18, *(len(name) + 1 for name in result.stages)])
    for name, secs in result.stages.items():
        lines.append(f"    {name:{width}s}{secs:8.2f} s")
    if any(name.startswith("instances.") for name in result.stages) and cfg["device"] == "cpu":
        lines.append("    (instances.*: summed over the worker threads that share the embeddings)")
    lines.append(
        f"  peak RSS            {result.peak_rss_gb:8.2f} GB  (after building: {result.rss_after_build_gb:.2f} GB)"
    )
    if result.peak_cuda_gb is not None:
        lines.append(f"  peak CUDA memory    {result.peak_cuda_gb:8.2f} GB")
    if result.agreement_with_fp32 is not None:
        lines.append(f"  argmax agreement with fp32: {100 * result.agreement_with_fp32:.2f} %")
    env = result.environment
    if env:
        lines.append(
            f"  machine: {env.get('processor')}, {env.get('cores')} cores, "
            f"{env.get('threads')} threads, torch {env.get('torch')}, {env.get('date')}"
        )
    if result.other_load_cores is not None:
        busy = "  (a busy machine: measure again)" if result.other_load_cores > 0.2 else ""
        lines.append(
            f"  other processes meanwhile: {result.other_load_cores:.2f} cores on average{busy}"
        )
    return "\n".join(lines)
