"""A text query end to end: a feature field distilled from the CLIP teacher (a tiny architecture in open_clip's own
layout, randomly initialised and saved as a checkpoint file: no real weights here, so no quality figure) is queried
by text through ``jn-query``; the text goes through the same checkpoint's text tower."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from run_utils import method_config, train

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def clip_run(synth_scene, tmp_path_factory):
    from test_teacher_clip import TINY, TINY_CFG

    from jacobinerf_ns.teachers import ClipTeacherConfig

    tmp = tmp_path_factory.mktemp("clip")
    (tmp / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(tmp / f"{TINY}.json")
    torch.manual_seed(7)
    checkpoint = tmp / "open_clip_pytorch_model.bin"
    torch.save(open_clip.create_model(TINY, pretrained=None).state_dict(), checkpoint)
    cfg = method_config("jacobinerf-features-tiny", synth_scene, tmp, steps=20, rays=256)
    cfg.pipeline.datamanager.teacher = ClipTeacherConfig(
        model_name=TINY, pretrained=None, checkpoint=checkpoint, load_size=None, show_progress=False, device="cpu"
    )
    cfg.pipeline.model.feature_dim = TINY_CFG["embed_dim"]  # text queries compare in CLIP's space: no PCA
    return train(cfg)


def test_text_query_selects_by_the_teachers_text_embedding(clip_run, tmp_path):
    from run_utils import load_pipeline

    from jacobinerf_ns import query as q
    from jacobinerf_ns.scripts.query import QueryCommand

    pipeline = load_pipeline(clip_run)
    query = q.query_from_text(pipeline, "a chair")
    teacher = pipeline.datamanager.teacher_config.setup()
    expected = torch.nn.functional.normalize(teacher.encode_text(["a chair"])[0].float(), dim=0)
    assert query.kind == "feature" and torch.allclose(query.vector, expected, atol=1e-6)
    cam = pipeline.datamanager.eval_dataset.cameras[0:1]
    sel = q.select(pipeline.model, cam, query, threshold=0.1)
    feats = q.render(pipeline.model, cam)["features"].cpu()
    cos = torch.nn.functional.cosine_similarity(feats, expected.expand_as(feats), dim=-1).clamp(min=0)
    assert torch.allclose(sel["selection_score"], cos, atol=1e-5)
    assert torch.equal(sel["selection"], cos >= 0.1)
    record = QueryCommand(load_config=clip_run, text="a chair", threshold=0.1, max_views=1, output_dir=tmp_path).main()
    mask = np.asarray(Image.open(tmp_path / "mask_0000.png")) > 0
    assert np.array_equal(mask, sel["selection"].numpy()) and record["points"] == int(mask.sum())
