"""Fine-tuning: what trains when, the best epoch kept, pairs bounded, and the tuned backbone used like any other."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurizer import FeatureFile, FeaturizerError, featurize
from pipelines.finetune._finetune import (
    Schedule,
    batch_norms_frozen,
    finetune,
    freeze_all_but,
    sample_pairs,
    stage_groups,
    train_epochs,
    validation_split,
)
from tests.test_flows import xfer

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def network():
    from featurizer import get_config
    from featurizer.backbones._describe import load_backbone
    from featurizer.spec._weights import default_weights

    config = get_config("efficientnet_lite0")
    return load_backbone(config, default_weights(config)).model


def test_stages_unfreeze_from_the_top_one_at_a_time(network):
    stages = stage_groups(network)
    assert any(n.startswith("conv_head") for n in stages[0]) and any(n.startswith("blocks.6") for n in stages[0])
    assert all(n.startswith("blocks.5") for n in stages[1])
    assert stages[-1][0].startswith("conv_stem") and not any("classifier" in n for s in stages for n in s)
    assert Schedule(head_epochs=1, stages=3, epochs_per_stage=2).unfrozen_per_epoch() == [0, 1, 1, 2, 2, 3, 3]
    previous: set[str] = set()
    for k in range(4):
        trainable = set(freeze_all_but(network, stages, k))
        assert previous < trainable or k == 0  # each stage adds to the ones above it
        assert trainable == {n for s in stages[:k] for n in s}
        previous = trainable


def test_one_step_changes_only_the_unfrozen_parameters_and_no_batch_norm_statistics(network):
    stages = stage_groups(network)
    freeze_all_but(network, stages, 1)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    batch_norms_frozen(network)
    head = torch.nn.Linear(1280, 3)
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad] + list(head.parameters()), lr=0.1)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    loss = torch.nn.functional.cross_entropy(
        head(network.forward_head(network.forward_features(x), pre_logits=True)), torch.tensor([0, 2])
    )
    loss.backward()
    optimizer.step()
    after = network.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= set(stages[0])  # batch norm running statistics are buffers: unchanged
    network.load_state_dict(before)


def test_early_stopping_keeps_the_best_validation_epoch_and_ctrl_c_keeps_it_too():
    state = {"w": 0}
    scores = iter([0.5, 0.8, 0.6, 0.7, 0.65, 0.9])

    def step(epoch, unfrozen):
        state["w"] = epoch + 1  # the "weights" after this epoch
        return 1.0

    run = train_epochs(step, lambda: next(scores), [0] * 6, lambda: dict(state), state.update, patience=3)
    curve, best, interrupted = run
    assert best == 2 and state["w"] == 2 and len(curve) == 5 and not interrupted  # stopped after 3 worse epochs

    def interrupting(epoch, unfrozen):
        if epoch == 2:
            raise KeyboardInterrupt
        return step(epoch, unfrozen)

    scores = iter([0.5, 0.8])
    curve, best, interrupted = train_epochs(
        interrupting, lambda: next(scores), [0] * 5, lambda: dict(state), state.update, 3
    )
    assert interrupted and best == 2 and state["w"] == 2
    # without patience (the deep schedule) every epoch runs and the best one is kept
    scores = iter([0.5, 0.8, 0.6, 0.7, 0.65, 0.75])
    curve, best, _ = train_epochs(step, lambda: next(scores), [0] * 6, lambda: dict(state), state.update, None)
    assert len(curve) == 6 and best == 2 and state["w"] == 2


def test_schedules_are_presets_that_options_override(network):
    deep = Schedule.preset("deep")
    assert deep.patience is None and deep.backbone_lr > Schedule().backbone_lr
    # "every stage" is as many as the network has: no epoch repeats the last stage
    available = len(stage_groups(network))
    plan = deep.unfrozen_per_epoch(available)
    assert plan == [0] + [k for k in range(1, available + 1) for _ in range(2)]
    assert Schedule.preset("deep", stages=2, patience=None).unfrozen_per_epoch(available) == [0, 1, 1, 2, 2]
    assert Schedule.preset("gentle", backbone_lr=None) == Schedule()
    result = xfer("finetune", ".", "--schedule", "wild", "-o", "x", ok=False)
    assert result.exit_code == 2 and "wild" in result.output


def test_a_class_with_one_example_trains_without_a_validation_split_and_says_so():
    train, val, notes = validation_split(np.array(["a", "a", "a", "b"]), 0.2, 0)
    assert len(val) == 0 and len(train) == 4 and "single example" in notes[0]
    train, val, notes = validation_split(np.array(["a"] * 10 + ["b"] * 10), 0.2, 0)
    assert len(val) == 4 and set(np.array(["a"] * 10 + ["b"] * 10)[val]) == {"a", "b"} and not notes


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from("abcd"), min_size=2, max_size=60), st.integers(0, 300))
def test_the_pair_sampler_never_builds_more_pairs_than_asked(labels, n):
    y = np.asarray(labels)
    if len(set(labels)) < 2:
        return
    pairs, same = sample_pairs(y, n, seed=1)
    assert pairs.shape == (n, 2) and same.shape == (n,)
    assert all((y[a] == y[b]) == bool(s) for (a, b), s in zip(pairs, same))
    assert all(a != b for (a, b), s in zip(pairs, same) if s)


def test_fine_tuned_images_load_as_a_backbone_with_their_own_cache_key(digits_dir, tmp_path):
    tuned = tmp_path / "tuned"
    schedule = Schedule(head_epochs=1, stages=1, epochs_per_stage=1, patience=5)
    report = finetune(digits_dir / "train", "efficientnet_lite0", tuned, schedule, progress=False)
    assert [r["stages_unfrozen"] for r in report.curve] == [0, 1] and report.best_epoch in (1, 2)
    saved = json.loads((tuned / "report.json").read_text())
    assert saved["data_sha256"] == report.data_sha256 and saved["schedule"]["stages"] == 1 and saved["seconds"] > 0
    base, mine = tmp_path / "base.h5", tmp_path / "tuned.h5"
    featurize(
        digits_dir / "test", "efficientnet_lite0", "pre_logits", output=base, cache_dir=tmp_path / "c", progress=False
    )
    xfer("featurize", digits_dir / "test", "-m", tuned, "-l", "pre_logits", "-o", mine, "--cache-dir", tmp_path / "c")
    with FeatureFile(base) as a, FeatureFile(mine) as b:
        differences = a.spec.differences(b.spec)
        assert any(d.startswith("weights_sha256") for d in differences)
        assert not np.allclose(a.read(), b.read())
    xfer("fit", mine, "-o", tmp_path / "m.skops")  # downstream unchanged
    result = xfer("finetune", digits_dir / "train", "-m", "efficientnet_lite0", "-o", tuned, ok=False)
    assert result.exit_code != 0 and "exists" in result.output


def test_fixed_seeds_give_the_same_weights_on_a_cpu(digits_dir, tmp_path):
    small = tmp_path / "small"
    for digit in ("1", "7"):
        shutil.copytree(digits_dir / "train" / digit, small / digit)
    schedule = Schedule(head_epochs=0, stages=1, epochs_per_stage=1, batch_size=8)
    from safetensors.torch import load_file

    weights = []
    for run in ("a", "b"):
        finetune(small, "efficientnet_lite0", tmp_path / run, schedule, progress=False)
        weights.append(load_file(tmp_path / run / "model.safetensors"))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_models_without_known_stages_are_refused_in_one_line(digits_dir, tmp_path):
    with pytest.raises(FeaturizerError, match="no stages"):
        stage_groups(torch.nn.Sequential(torch.nn.Linear(2, 2)))
    result = xfer("finetune", digits_dir / "train", "-m", "torchvision/resnet18", "-o", tmp_path / "t", ok=False)
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_contrastive_text_tuning_makes_a_backbone_with_its_own_cache_key(tmp_path):
    from tests.test_tasks import news_rows, write_table

    rows = [{"text": r["text"], "label": r["topic"]} for r in news_rows(18, 0)]
    write_table(tmp_path / "news.csv", rows)
    report = finetune(tmp_path / "news.csv", "minilm", tmp_path / "tuned", Schedule(pairs=24), progress=False)
    assert report.curve[0]["pairs"] == 24 and report.modality == "text"
    paths = [tmp_path / "base.h5", tmp_path / "tuned.h5"]
    for model, path in zip(("minilm", str(tmp_path / "tuned")), paths):
        featurize(tmp_path / "news.csv", model, "-1", output=path, cache_dir=tmp_path / "c", progress=False)
    with FeatureFile(paths[0]) as a, FeatureFile(paths[1]) as b:
        assert a.spec.weights_sha256 != b.spec.weights_sha256 and not np.allclose(a.read(), b.read(), atol=1e-4)
