"""Layer Explorer's extraction core: which layer, which pooling, and the features themselves.

Discover, then build (the shape of torchvision's feature extraction)::

    from extractor import load_backbone, feature_layers, FeatureExtractor, gather_paths

    backbone = load_backbone("demo-shapes")                 # or "resnet50", weights="imagenet"
    print([l.name for l in feature_layers(backbone.model)])
    fx = FeatureExtractor(backbone, ["block2_pool", "block4_pool"], poolings=["avg", "gem"])
    batch = gather_paths(["my_images/"])                    # folder-per-class gives labels
    result = fx.extract(batch.sources, batch_size=32)
    result.features["block4_pool/gem"]                      # (N, C) float32

Nothing here imports Streamlit; TensorFlow is imported when a model is first built.
"""

from .activation_max import activation_maximisation
from .backbones import (
    BACKBONES,
    Backbone,
    BackboneSpec,
    ImageNetWeightsMissingError,
    InvalidInputSizeError,
    UnknownBackboneError,
    WeightsInfo,
    WeightsUnavailableError,
    backbone_from_model,
    get_spec,
    imagenet_cached,
    imagenet_weights_path,
    load_backbone,
    preprocess_images,
    rebuild_backbone,
)
from .calibration import CalibrationError, calibrate_batchnorm, has_batchnorm
from .channels import channel_stats, top_images
from .cka import cka_matrix, linear_cka
from .errors import LayerExplorerError
from .explain import ClassEvidence, Classifier, GradCam, NoClassifier, class_evidence, find_classifier, grad_cam
from .feature_health import FeatureHealth, check_features
from .features import (
    PRECISIONS,
    ExtractionRequestError,
    ExtractionResult,
    Failure,
    FeatureExtractor,
    NoImagesError,
    RawMapsTooLargeError,
    feature_key,
    split_key,
)
from .images import (
    RESIZE_POLICIES,
    DecodedImage,
    InvalidImageError,
    decode_image,
    load_image,
    resize_image,
)
from .layers import LayerInfo, UnknownLayerError, feature_layers, find_layer, representative_layers
from .pooling import GLOBAL_POOLINGS, POOLINGS, pool_numpy
from .receptive_field import ReceptiveField, receptive_fields
from .runtime import RUNTIMES, ConversionError, RuntimeUnavailableError
from .sources import ImageSource, SourceBatch, gather_paths, gather_uploads

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneSpec",
    "CalibrationError",
    "ClassEvidence",
    "Classifier",
    "ConversionError",
    "DecodedImage",
    "ExtractionRequestError",
    "ExtractionResult",
    "Failure",
    "FeatureExtractor",
    "FeatureHealth",
    "GradCam",
    "GLOBAL_POOLINGS",
    "ImageNetWeightsMissingError",
    "ImageSource",
    "InvalidImageError",
    "InvalidInputSizeError",
    "LayerExplorerError",
    "LayerInfo",
    "NoClassifier",
    "NoImagesError",
    "POOLINGS",
    "PRECISIONS",
    "RESIZE_POLICIES",
    "RUNTIMES",
    "RuntimeUnavailableError",
    "RawMapsTooLargeError",
    "ReceptiveField",
    "SourceBatch",
    "UnknownBackboneError",
    "UnknownLayerError",
    "WeightsInfo",
    "WeightsUnavailableError",
    "activation_maximisation",
    "backbone_from_model",
    "calibrate_batchnorm",
    "channel_stats",
    "check_features",
    "cka_matrix",
    "class_evidence",
    "decode_image",
    "feature_key",
    "feature_layers",
    "find_classifier",
    "find_layer",
    "gather_paths",
    "gather_uploads",
    "get_spec",
    "has_batchnorm",
    "imagenet_cached",
    "grad_cam",
    "imagenet_weights_path",
    "linear_cka",
    "load_backbone",
    "load_image",
    "pool_numpy",
    "preprocess_images",
    "rebuild_backbone",
    "receptive_fields",
    "representative_layers",
    "resize_image",
    "split_key",
    "top_images",
]
