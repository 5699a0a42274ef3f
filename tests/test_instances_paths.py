"""The fast instance path gives the reference order's masks on a decoder with many candidates:
the factored decoder up to float32 round-off in the scores, the exact one bit for bit."""

from __future__ import annotations

import pytest

from panosamic.instances import pipeline
from tests.instance_models import neck_of, random_instance_model, random_panorama, same_masks
from tests.instances_reference import reference_masks

pytestmark = pytest.mark.slow

MANY = {"points_per_side": 16, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.9}
SCORE_TOL = {"factored": 1e-6, "exact": 0.0}


@pytest.mark.parametrize(
    ("height", "options", "min_nms"),
    [
        (64, {}, 10),  # input smaller than the network's 128 x 256
        (
            128,
            {"min_mask_region_area": 40, "point_grid": "image", "modalities": ("image", "normals")},
            2,
        ),
    ],
    ids=["defaults", "options"],
)
@pytest.mark.parametrize("decoder", ["factored", "exact"])
def test_fast_path_equals_reference_order(
    height, options, min_nms, decoder, two_threads, monkeypatch
):
    # the fast path runs the embeddings in two worker threads; the reference order serially
    calls = []
    real = pipeline.map_parallel
    monkeypatch.setattr(
        pipeline, "map_parallel", lambda fn, jobs: calls.append(len(jobs)) or real(fn, jobs)
    )
    model = random_instance_model(**MANY, **options, decoder=decoder)
    batch = random_panorama(model, height)
    neck = neck_of(model, batch)
    size = [(height, 2 * height)]
    counts: dict[str, int] = {}
    (fast,) = model.instance_masks(neck, size, counts=counts)
    (reference,) = reference_masks(model, neck, size)
    assert same_masks(fast, reference, score_tol=SCORE_TOL[decoder])
    assert calls == [2 * len(model.config.amg.modalities or model.config.modalities)]
    # the filters had real work to do
    assert counts["after_iou_filter"] < counts["candidates"]
    assert 300 < counts["after_stability_filter"] < counts["after_iou_filter"]
    assert min_nms <= counts["after_nms"] < counts["after_stability_filter"]
    assert 1 <= len(fast) <= counts["after_nms"]
