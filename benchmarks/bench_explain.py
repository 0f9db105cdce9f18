"""Grad-CAM cost against one plain forward-and-backward pass, side by side in one run.

For demo-shapes (64×64, shipped weights) and ResNet50 (224×224, random weights, with its
1000-class head so there is a class score to explain), on the same single image:

* ``grad_cam``: ``extractor.explain.grad_cam`` for the predicted class (compiled once, then timed);
* ``fwd+bwd``: one compiled forward pass and the gradient of the top score with respect to the
  input image (the whole backward pass);
* the ratio (target: at most 2×). Grad-CAM++ is timed too.

Medians over ``--repeats`` calls after a warm-up. The machine is shared: compare the ratios.

Usage:
    python benchmarks/bench_explain.py
    python benchmarks/bench_explain.py --repeats 5    # a quicker run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _median_s(fn, repeats: int) -> float:
    fn()  # warm-up: tracing and first-call allocation are not what a user waits for twice
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _forward_backward(model):
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=False)
            score = tf.reduce_max(y, axis=1)
        return tape.gradient(score, x)

    return step


def _case(label: str, backbone, size: int, repeats: int) -> None:
    import tensorflow as tf

    from extractor import preprocess_images
    from extractor.demo import make_shapes
    from extractor.explain import find_classifier, grad_cam

    clf = find_classifier(backbone)
    image = np.stack(make_shapes(per_class=1, size=size, seed=0).images[:1])
    x = tf.constant(preprocess_images(image, clf.preprocessing))
    step = _forward_backward(clf.model)
    base = _median_s(lambda: step(x).numpy(), repeats)
    cache: dict = {}
    cam = _median_s(lambda: grad_cam(clf, image, _cache=cache), repeats)
    campp = _median_s(lambda: grad_cam(clf, image, method="gradcam++", _cache=cache), repeats)
    print(f"{label:<26}{base * 1e3:>12.1f}{cam * 1e3:>13.1f}{cam / base:>7.2f}×{campp * 1e3:>15.1f}"
          f"{campp / base:>7.2f}×")


def main() -> None:
    import keras

    from extractor import backbone_from_model, load_backbone

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    cases = [("demo-shapes", load_backbone("demo-shapes"), 64)]
    resnet = keras.applications.ResNet50(include_top=True, weights=None)
    cases.append(("resnet50 (random, 224)", backbone_from_model(resnet, preprocessing="caffe"), 224))
    print(f"{'network':<26}{'fwd+bwd ms':>12}{'grad_cam ms':>13}{'ratio':>8}{'grad_cam++ ms':>15}{'ratio':>8}")
    for label, backbone, size in cases:
        _case(label, backbone, size, args.repeats)
    print("grad_cam includes preprocessing, the class probabilities and the upsampled heat map; target ≤ 2×.")


if __name__ == "__main__":
    main()
