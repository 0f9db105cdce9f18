"""Theoretical receptive fields, computed from the model's graph.

For every layer, :func:`receptive_fields` gives the size (in input pixels) of the region one
cell of its output can see, its effective stride (how many input pixels one step across the
map moves) and where the first cell's region is centred. They follow the recurrences of
Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks" (Distill, 2019),
along every path of the graph: kernel sizes, strides, dilations and padding of convolutions,
poolings, paddings and croppings; element-wise layers pass them through; where branches meet
(ResNet's add, Inception's and DenseNet's concat) the largest field is kept. Models nested
inside a model are followed, and their layers get qualified names (``"outer/inner"``).

Example:
    >>> rf = receptive_fields(load_backbone("vgg16", weights="none").model)
    >>> rf["block3_pool"].size, rf["block3_pool"].stride, rf["block5_pool"].size
    ((44, 44), (8, 8), (212, 212))
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReceptiveField", "cell_region", "receptive_fields"]

SEPARATOR = "/"  # the qualified-name separator of extractor.layers (kept equal on purpose)

_CONVS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv1D")
_POOLS = ("MaxPooling2D", "AveragePooling2D")


@dataclass(frozen=True)
class ReceptiveField:
    """One layer's receptive field, per axis (height, width), in input pixels.

    ``size``: the side of the square (or rectangle) of input pixels one output cell sees.
    ``stride``: input pixels between neighbouring cells (the product of strides on the way).
    ``start``: the centre of cell (0, 0)'s field, in input pixel coordinates (it can be
    negative: padding puts part of a field outside the image). Values are floats where an
    up-sampling layer makes them fractional.
    """

    size: tuple[float, float]
    stride: tuple[float, float]
    start: tuple[float, float]

    def as_dict(self) -> dict:
        return {"size": list(self.size), "stride": list(self.stride), "start": list(self.start)}


_INPUT = ReceptiveField((1, 1), (1, 1), (0.0, 0.0))


def cell_region(rf: ReceptiveField, row: int, col: int, input_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the input pixels cell (row, col) sees, clipped at the borders.

    ``bottom`` and ``right`` are exclusive, ready for slicing: ``image[top:bottom, left:right]``.

    Example:
        >>> rf = ReceptiveField((44, 44), (8, 8), (3.5, 3.5))
        >>> cell_region(rf, 0, 0, (224, 224)), cell_region(rf, 27, 27, (224, 224))
        ((0, 0, 26, 26), (198, 198, 224, 224))
    """
    out = []
    for axis, index in ((0, row), (1, col)):
        centre = rf.start[axis] + index * rf.stride[axis]
        half = (rf.size[axis] - 1) / 2
        lo = int(round(centre - half))
        hi = int(round(centre + half)) + 1
        out.append((max(0, lo), min(int(input_size[axis]), hi)))
    (top, bottom), (left, right) = out
    return top, left, bottom, right


def _pair(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return (int(value[0]), int(value[-1])) if len(value) else (1, 1)
    return int(value), int(value)


def _same_left_pad(size, k_eff: int, s: int) -> int:
    """TensorFlow's 'same' padding on the top/left side (the smaller half)."""
    if size is None:  # native-size model: assume the size divides by the stride
        total = max(k_eff - s, 0)
    elif size % s == 0:
        total = max(k_eff - s, 0)
    else:
        total = max(k_eff - size % s, 0)
    return total // 2


def _window(rf: ReceptiveField, kernel, strides, dilation, padding: str, in_hw) -> ReceptiveField:
    size, stride, start = [], [], []
    for axis in (0, 1):
        k, s, d = kernel[axis], strides[axis], dilation[axis]
        k_eff = d * (k - 1) + 1
        p = _same_left_pad(in_hw[axis], k_eff, s) if padding == "same" else 0
        j = rf.stride[axis]
        size.append(rf.size[axis] + (k_eff - 1) * j)
        start.append(rf.start[axis] + ((k_eff - 1) / 2 - p) * j)
        stride.append(j * s)
    return ReceptiveField(tuple(size), tuple(stride), tuple(start))


def _spatial(shape):
    """(H, W) of a rank-4 shape, else None."""
    if shape is None:
        return None
    shape = tuple(shape)
    if len(shape) != 4:
        return None
    return shape[1], shape[2]


def _apply(layer, rfs: list, in_shapes: list, out_shape):
    """The receptive field of ``layer``'s output from those of its inputs (None: not spatial/unknown)."""
    known = [r for r in rfs if r is not None]
    if not known or _spatial(out_shape) is None:
        return None
    cls = type(layer).__name__
    rf = max(known, key=lambda r: r.size[0] * r.size[1])  # branches: the largest field
    in_hw = _spatial(in_shapes[0]) if in_shapes else None
    if cls in _CONVS or cls in _POOLS:
        if cls in _POOLS:
            kernel = _pair(layer.pool_size)
            strides = _pair(layer.strides if layer.strides is not None else layer.pool_size)
            dilation = (1, 1)
        else:
            kernel, strides, dilation = _pair(layer.kernel_size), _pair(layer.strides), _pair(layer.dilation_rate)
        return _window(rf, kernel, strides, dilation, str(layer.padding).lower(), in_hw or (None, None))
    if cls == "ZeroPadding2D":
        (top, _), (left, _) = layer.padding
        return ReceptiveField(rf.size, rf.stride, (rf.start[0] - top * rf.stride[0], rf.start[1] - left * rf.stride[1]))
    if cls == "Cropping2D":
        (top, _), (left, _) = layer.cropping
        return ReceptiveField(rf.size, rf.stride, (rf.start[0] + top * rf.stride[0], rf.start[1] + left * rf.stride[1]))
    if cls == "UpSampling2D":
        fh, fw = _pair(layer.size)
        return ReceptiveField(rf.size, (rf.stride[0] / fh, rf.stride[1] / fw), rf.start)
    if cls == "Conv2DTranspose":
        kernel, strides = _pair(layer.kernel_size), _pair(layer.strides)
        size = tuple(rf.size[a] + (-(-kernel[a] // strides[a]) - 1) * rf.stride[a] for a in (0, 1))
        return ReceptiveField(size, (rf.stride[0] / strides[0], rf.stride[1] / strides[1]), rf.start)
    out_hw = _spatial(out_shape)
    if in_hw and in_hw != out_hw and cls == "Resizing" and None not in in_hw and None not in out_hw:
        scale = (in_hw[0] / out_hw[0], in_hw[1] / out_hw[1])
        return ReceptiveField(rf.size, (rf.stride[0] * scale[0], rf.stride[1] * scale[1]), rf.start)
    if in_hw is not None and in_hw != out_hw:
        return None  # a layer that changes the map size in a way not modelled here: say "unknown"
    return rf  # element-wise (activation, norm, dropout, rescaling) or a merge of aligned branches


def _is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _propagate(model, in_rfs: list, prefix: str, out: dict):
    """Receptive fields of ``model``'s outputs given those of its inputs; records every layer in ``out``."""
    import keras

    if isinstance(model, keras.Sequential):
        rf = in_rfs[0]
        shape = tuple(model.inputs[0].shape)
        for layer in model.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            out_shape = tuple(layer.compute_output_shape(shape))
            if _is_model(layer):
                rf = _propagate(layer, [rf], prefix + layer.name + SEPARATOR, out)[0]
            else:
                rf = _apply(layer, [rf], [shape], out_shape)
            out[prefix + layer.name] = rf
            shape = out_shape
        return [rf]
    values = {id(x): r for x, r in zip(model.inputs, in_rfs, strict=True)}
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            layer = node.operation
            if layer is None or node.is_input:
                continue
            ins = list(node.input_tensors)
            if any(id(x) not in values for x in ins):
                continue
            rfs = [values[id(x)] for x in ins]
            if _is_model(layer):
                outs = _propagate(layer, rfs, prefix + layer.name + SEPARATOR, out)
            else:
                outs = [_apply(layer, rfs, [x.shape for x in ins], o.shape) for o in node.outputs]
            for o, r in zip(node.outputs, outs, strict=False):
                values[id(o)] = r
            out[prefix + layer.name] = outs[0]
    return [values.get(id(x)) for x in model.outputs]


def receptive_fields(model) -> dict[str, ReceptiveField | None]:
    """Every layer's receptive field by (qualified) name; None where the output is not a map or unknown.

    A Sequential model that was never called is built first (at 224×224), like in
    :func:`extractor.layers.feature_layers`.
    """
    import keras

    if isinstance(model, keras.Sequential):
        try:
            _ = model.inputs
        except (AttributeError, ValueError):
            model.build((None, 224, 224, 3))
    out: dict[str, ReceptiveField | None] = {}
    _propagate(model, [_INPUT] * len(model.inputs), "", out)
    return out
