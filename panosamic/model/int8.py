"""Int8 matrix products for the image encoder's frozen linear layers (``precision="int8"``, CPU).

A linear layer y = x W^T + b with W (N, K) becomes an int8 product:

* the weight is quantised once, symmetrically per output channel:
  W[n] ~= Wq[n] * w_scale[n] with Wq int8 in [-127, 127], and packed for the
  CPU's int8 instructions (AMX or VNNI) by oneDNN;
* the activations are quantised at every call, asymmetrically over the whole
  call (T, K): x ~= (xq - zero_point) * x_scale with xq uint8, the range taken
  from this call's minimum and maximum (a dynamic scale: no calibration);
* oneDNN multiplies xq by Wq with int32 accumulation and applies both scales,
  the bias and optionally GELU before writing bfloat16 (or float32).

:class:`Int8Linears` holds the packed weights of a module's linear layers,
made on first use and made again only when a weight changes (loading new
weights, moving the model). Which layers it quantises is an
:class:`~panosamic.model.config.Int8Layers` selection; the others stay dense
(bfloat16 under autocast).

Only CPUs: oneDNN's quantised kernels are PyTorch's CPU kernels.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import Int8Layers

# torch.quantize_per_tensor is the fast fused float -> uint8 kernel (only its bytes are used
# here). PyTorch warns once per process that quantised tensors are deprecated: that once is
# spent here, quietly.
if hasattr(torch, "quantize_per_tensor"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.quantize_per_tensor(torch.zeros(1), 1.0, 0, torch.quint8)

_WEIGHT_LEVELS = 127  # symmetric int8 weights: [-127, 127]
_ACTIVATION_LEVELS = 255  # asymmetric uint8 activations: [0, 255]


def int8_available() -> bool:
    """Whether this PyTorch build has the oneDNN int8 linear kernels (x86 CPU builds do)."""
    onednn = getattr(torch.ops, "onednn", None)
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch, "quantize_per_tensor")
        and hasattr(onednn, "qlinear_prepack")
        and hasattr(onednn, "qlinear_pointwise")
    )


def quantize_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """(N, K) float weight -> (int8 (N, K), float32 scales (N,)) with weight ~= q * scales[:, None].

    Symmetric per output channel; an all-zero row gets scale 1 (and zeros).
    """
    weight = weight.detach().float()
    scales = weight.abs().amax(dim=1) / _WEIGHT_LEVELS
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    q = torch.round(weight / scales[:, None]).clamp_(-_WEIGHT_LEVELS, _WEIGHT_LEVELS)
    return q.to(torch.int8), scales


def quantize_activations(x: Tensor) -> tuple[Tensor, float, int]:
    """(T, K) float32 -> (uint8 (T, K), scale, zero point) with x ~= (q - zero point) * scale.

    The range is this tensor's [min, max], widened to include 0 so that a zero
    input is exact. The uint8 result shares the bytes of the quantised tensor
    (no copy).
    """
    low, high = (float(v) for v in torch.aminmax(x))
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / _ACTIVATION_LEVELS
    if not scale > 0:  # all zeros (or not finite: let the product show it)
        scale = 1.0
    zero_point = min(_ACTIVATION_LEVELS, max(0, round(-low / scale)))
    quantized = torch.quantize_per_tensor(x, scale, zero_point, torch.quint8)
    raw = torch.empty(0, dtype=torch.uint8, device=x.device)
    raw.set_(quantized.untyped_storage(), 0, quantized.shape, quantized.stride())
    return raw, scale, zero_point


class Int8Linear:
    """One frozen :class:`~torch.nn.Linear` as an int8 product (see the module docstring).

    Holds the packed int8 weight (about a quarter of the float32 weight's bytes),
    the per-channel scales and the float32 bias.
    """

    def __init__(self, linear: nn.Linear) -> None:
        if linear.weight.device.type != "cpu":
            raise ValueError(f"int8 linear layers run on CPUs only, not {linear.weight.device}")
        self.out_features, self.in_features = linear.weight.shape
        qweight, self.scales = quantize_weight(linear.weight)
        self.packed = torch.ops.onednn.qlinear_prepack(qweight, None)
        self.zero_points = torch.zeros(self.out_features, dtype=torch.long)
        self.bias = None if linear.bias is None else linear.bias.detach().float()

    def __call__(
        self,
        x: Tensor,
        gelu: bool = False,
        out_dtype: torch.dtype = torch.bfloat16,
        add_to: Tensor | None = None,
    ) -> Tensor:
        """(..., K) -> (..., N) in ``out_dtype`` (bfloat16 or float32), GELU'd if ``gelu``.

        With ``add_to`` (float32, shaped like the output, contiguous) the result
        is added into it in place (the product's epilogue does the addition)
        and ``add_to`` is returned.
        """
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected {self.in_features} input features, got {x.shape[-1]}")
        flat = x.reshape(-1, self.in_features)
        if flat.dtype != torch.float32:
            flat = flat.float()
        quantized, scale, zero_point = quantize_activations(flat.contiguous())
        post_op, algorithm = ("gelu", "none") if gelu else ("none", "")
        if add_to is not None and add_to.dtype == torch.float32 and add_to.is_contiguous():
            torch.ops.onednn.qlinear_pointwise.binary(
                quantized, scale, zero_point,
                self.packed, self.scales, self.zero_points,
                add_to.view(-1, self.out_features), self.bias,
                1.0, 0, torch.float32, 1.0, 0, "sum", 1.0, post_op, [], algorithm,
            )  # fmt: skip
            return add_to
        out = torch.ops.onednn.qlinear_pointwise(
            quantized, scale, zero_point,
            self.packed, self.scales, self.zero_points, self.bias,
            1.0, 0, out_dtype, post_op, [], algorithm,
        ).view(*x.shape[:-1], self.out_features)  # fmt: skip
        return out if add_to is None else add_to.add_(out)


def _weight_key(linear: nn.Linear) -> tuple:
    """What identifies a weight's current values: storage, in-place version, device."""
    w = linear.weight
    return (w.data_ptr(), w._version, w.device, w.dtype)


class Int8Linears:
    """The int8 versions of some of a module's linear layers, kept while the weights stay.

    ``selection`` says which layers run in int8, by their names in the module
    (``blocks.<i>.attn.qkv`` ...). :meth:`refresh` takes (name, layer) pairs and
    quantises the selected layers whose weight is new or changed (cheap when
    nothing changed); :meth:`get` returns a layer's :class:`Int8Linear`, or
    None for a layer kept dense. Called like a linear function,
    ``linears(layer, x, gelu=..., add_to=...)``, it applies either.
    """

    def __init__(self, selection: Int8Layers) -> None:
        self.selection = selection
        self._packed: dict[int, tuple[tuple, Int8Linear]] = {}

    def refresh(self, layers: Iterable[tuple[str, nn.Linear]]) -> None:
        """Quantise every selected layer whose weight is new or changed since the last call."""
        if not int8_available():
            raise RuntimeError(
                "precision 'int8' needs PyTorch's oneDNN int8 kernels, which this PyTorch build "
                "lacks; use precision 'bf16'"
            )
        seen = set()
        for name, linear in layers:
            if not self.selection.quantizes(name):
                continue
            seen.add(id(linear))
            key = _weight_key(linear)
            held = self._packed.get(id(linear))
            if held is None or held[0] != key:
                self._packed[id(linear)] = (key, Int8Linear(linear))
        for stale in set(self._packed) - seen:
            del self._packed[stale]

    def get(self, linear: nn.Linear) -> Int8Linear | None:
        held = self._packed.get(id(linear))
        return None if held is None else held[1]

    def __call__(
        self, linear: nn.Linear, x: Tensor, gelu: bool = False, add_to: Tensor | None = None
    ) -> Tensor:
        """``linear(x)``, GELU'd if ``gelu``, added into ``add_to`` if given: int8 if
        selected, else with the layer's own weights."""
        packed = self.get(linear)
        if packed is not None:
            return packed(x, gelu=gelu, add_to=add_to)
        out = F.linear(x, linear.weight, linear.bias)
        out = F.gelu(out) if gelu else out
        return out if add_to is None else add_to.add_(out)

    def quantized_layers(self) -> set[int]:
        """``id`` of every nn.Linear held in int8 (its float weight is not used meanwhile)."""
        return set(self._packed)
