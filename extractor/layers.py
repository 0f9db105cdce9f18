"""Which layers of a model produce feature maps, and what they look like.

:func:`feature_layers` is the discovery half of the core (the build half is
:class:`extractor.features.FeatureExtractor`): every layer whose output is a rank-4 map, in
depth order, with its shape, kind, block and stride. Layers of a backbone nested inside a
transfer-learning model get a qualified name, ``"outer_layer/inner_layer"``.

Example:
    >>> layers = feature_layers(load_backbone("vgg16", weights="none").model)
    >>> layers[0].name, layers[0].shape, layers[0].kind, layers[0].block
    ('block1_conv1', (224, 224, 64), 'conv', 'block1')
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from .errors import LayerExplorerError
from .receptive_field import receptive_fields

__all__ = [
    "feature_key",
    "split_key",
    "LayerInfo",
    "UnknownLayerError",
    "feature_layers",
    "find_layer",
    "representative_layers",
]

SEPARATOR = "/"


def feature_key(layer: str, pooling: str) -> str:
    """``"block3_conv1/avg"`` — the key of one pooled feature array.

    Example:
        >>> feature_key("model/block1", "avg"), split_key("model/block1/avg"), split_key("abc")
        ('model/block1/avg', ('model/block1', 'avg'), ('', 'abc'))
    """
    return f"{layer}{SEPARATOR}{pooling}"


def split_key(key: str) -> tuple[str, str]:
    """Inverse of :func:`feature_key` (layer names may themselves contain the separator): the one rule."""
    layer, _, pooling = str(key).rpartition(SEPARATOR)
    return layer, pooling


class UnknownLayerError(LayerExplorerError):
    """A requested layer name is not a feature-map layer of the model."""


@dataclass(frozen=True)
class LayerInfo:
    """One feature-map layer. ``shape`` is (H, W, C); H and W are None for native-size models.

    ``receptive_field`` and ``effective_stride`` are (height, width) in input pixels, computed
    from the graph (:mod:`extractor.receptive_field`); None where a layer is not modelled.
    """

    name: str
    shape: tuple[int | None, int | None, int]
    kind: str
    block: str
    stride: int | None
    depth: int
    class_name: str
    receptive_field: tuple[float, float] | None = None
    effective_stride: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        for key in ("receptive_field", "effective_stride"):
            d[key] = None if d[key] is None else list(d[key])
        return d


_KINDS = {
    "Conv2D": "conv", "DepthwiseConv2D": "conv", "SeparableConv2D": "conv", "Conv2DTranspose": "conv",
    "MaxPooling2D": "pool", "AveragePooling2D": "pool", "ZeroPadding2D": "padding", "Cropping2D": "padding",
    "Activation": "activation", "ReLU": "activation", "LeakyReLU": "activation", "PReLU": "activation", "ELU": "activation",
    "Add": "add", "Multiply": "multiply", "Concatenate": "concat", "Subtract": "add",
    "BatchNormalization": "norm", "LayerNormalization": "norm", "GroupNormalization": "norm",
    "Rescaling": "preprocess", "Normalization": "preprocess", "Resizing": "preprocess",
    "Dropout": "dropout", "SpatialDropout2D": "dropout", "InputLayer": "input", "UpSampling2D": "upsample",
}

# Block names as the Keras applications spell them, most specific first.
_BLOCK_PATTERNS = [
    re.compile(r"(conv\d+_block\d+)_"),          # ResNet, DenseNet: conv3_block2_1_conv
    re.compile(r"(stage_\d+_block_\d+)_"),       # ConvNeXt: convnext_tiny_stage_1_block_0_...
    re.compile(r"^(block_?\d+[a-z]?)_"),         # VGG/Xception block1_, EfficientNet block2a_, MobileNetV2 block_3_
    re.compile(r"^(expanded_conv(?:_\d+)?)_"),   # MobileNetV2 first block, MobileNetV3
    re.compile(r"^(pool\d+)_"),                  # DenseNet transitions
    re.compile(r"^(conv\d+)_"),                  # ResNet stem conv1_
    re.compile(r"(downsampling_block_\d+)"),     # ConvNeXt
]
_CLOSER = re.compile(r"^mixed\d+$")             # Inception: 'mixedN' ends a block


def _kind(layer) -> str:
    cls = type(layer).__name__
    if _is_model(layer):
        return "model"
    return _KINDS.get(cls, cls.lower())


def _is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _ensure_built(model, input_size=None):
    """A Sequential model that was never called has no graph yet: build it at a size."""
    import keras

    if isinstance(model, keras.Sequential):
        try:
            _ = model.inputs  # raises when a Sequential has not been built yet
            return
        except (AttributeError, ValueError):
            pass
        h, w = input_size or (224, 224)
        model.build((None, h, w, 3))


def _walk(model, prefix: str = ""):
    """Yield (qualified name, layer) for every layer, descending into nested models."""
    for layer in model.layers:
        qualified = prefix + layer.name
        if _is_model(layer):
            _ensure_built(layer)
            yield from _walk(layer, qualified + SEPARATOR)
        yield qualified, layer


def _output_shape(layer):
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        try:
            shape = layer.compute_output_shape(layer.input.shape)
        except Exception:
            return None
    if isinstance(shape, list):  # a layer with several outputs is not a feature map
        return None
    return tuple(shape)


def _assign_blocks(names: list[str]) -> list[str]:
    short = [n.rsplit(SEPARATOR, 1)[-1] for n in names]
    if any(_CLOSER.match(n) for n in short):
        # Inception-style: everything up to and including 'mixedN' belongs to block 'mixedN'.
        blocks, pending = [], []
        for n in short:
            pending.append(n)
            if _CLOSER.match(n):
                blocks.extend([n] * len(pending))
                pending = []
        return blocks + ["top"] * len(pending)
    matched = []
    for n in short:
        block = None
        for pattern in _BLOCK_PATTERNS:
            m = pattern.search(n)
            if m:
                block = m.group(1)
                break
        matched.append(block)
    seen = [i for i, b in enumerate(matched) if b is not None]
    if not seen:
        return ["all"] * len(names)
    first, last = seen[0], seen[-1]
    blocks, current = [], None
    for i, b in enumerate(matched):
        if b is not None:
            current = b
            blocks.append(b)
        elif i < first:
            blocks.append("stem")
        elif i > last:
            blocks.append("top")
        else:
            blocks.append(current)
    return blocks


def feature_layers(model, input_size: tuple[int, int] | None = None) -> list[LayerInfo]:
    """Every layer whose output is a rank-4 feature map, in depth order.

    ``input_size`` is only used to build a Sequential model that was never called.
    The stride is the input height divided by the map's height (None for native-size models).
    """
    _ensure_built(model, input_size)
    input_h = model.inputs[0].shape[1]
    rows = []
    for qualified, layer in _walk(model):
        if type(layer).__name__ == "InputLayer":
            continue
        shape = _output_shape(layer)
        if shape is None or len(shape) != 4:
            continue
        rows.append((qualified, layer, shape))
    blocks = _assign_blocks([q for q, _, _ in rows])
    fields = receptive_fields(model)
    out = []
    for depth, ((qualified, layer, shape), block) in enumerate(zip(rows, blocks, strict=False)):
        h, w, c = shape[1], shape[2], shape[3]
        stride = int(round(input_h / h)) if input_h and h else None
        rf = fields.get(qualified)
        out.append(LayerInfo(qualified, (h, w, int(c)), _kind(layer), block, stride, depth, type(layer).__name__,
                             None if rf is None else rf.size, None if rf is None else rf.stride))
    return out


def find_layer(layers: Sequence[LayerInfo], name: str, model_name: str = "the model") -> LayerInfo:
    """The layer called ``name``, or an :class:`UnknownLayerError` naming the closest names."""
    for info in layers:
        if info.name == name:
            return info
    names = [info.name for info in layers]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.4)
    hint = f" Closest names: {', '.join(close)}." if close else ""
    raise UnknownLayerError(
        f"No feature-map layer {name!r} in {model_name}.{hint} "
        "`python -m extractor layers BACKBONE` lists them all."
    )


def representative_layers(layers: Sequence[LayerInfo], level: str = "block") -> list[LayerInfo]:
    """One layer per block (``level="block"``) or per resolution (``level="stride"``).

    A block is represented by its last layer, its output: the representation the next block
    builds on. Per resolution, the last block output at that stride is chosen. Preprocessing,
    padding and dropout layers are never chosen.
    """
    if level not in ("block", "stride"):
        raise ValueError(f"level must be 'block' or 'stride', not {level!r}")
    chosen: dict[object, LayerInfo] = {}
    for info in layers:
        if info.kind not in ("preprocess", "padding", "dropout", "input"):
            chosen[info.block] = info  # later layers overwrite: the block's output
    blocks = sorted(chosen.values(), key=lambda lyr: lyr.depth)
    if level == "block":
        return blocks
    by_stride: dict[object, LayerInfo] = {}
    for info in blocks:
        by_stride[info.stride if info.stride is not None else info.block] = info
    return sorted(by_stride.values(), key=lambda lyr: lyr.depth)
