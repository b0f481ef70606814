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
    candidate_schedules,
    finetune,
    freeze_all_but,
    sample_pairs,
    stage_groups,
    train_epochs,
    validation_split,
)
from pipelines.finetune._l2sp import StartingPoint
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
    curve, best, stopped = run
    assert best == 2 and state["w"] == 2 and len(curve) == 5 and stopped == "early stopping"  # 3 worse epochs

    def interrupting(epoch, unfrozen):
        if epoch == 2:
            raise KeyboardInterrupt
        return step(epoch, unfrozen)

    scores = iter([0.5, 0.8])
    run = train_epochs(interrupting, lambda: next(scores), [0] * 5, lambda: dict(state), state.update, 3)
    assert run.interrupted and run.best == 2 and state["w"] == 2
    # without patience (the deep schedule) every epoch runs and the best one is kept
    scores = iter([0.5, 0.8, 0.6, 0.7, 0.65, 0.75])
    curve, best, stopped = train_epochs(step, lambda: next(scores), [0] * 6, lambda: dict(state), state.update, None)
    assert len(curve) == 6 and best == 2 and state["w"] == 2 and stopped == "done"


def test_a_budget_that_has_run_out_starts_no_further_epoch_and_keeps_the_best():
    """The first epoch always runs; after it, an epoch that would end past the deadline is not started."""
    import time

    state = {"w": 0}
    scores = iter([0.6, 0.9, 0.7])

    def step(epoch, unfrozen):
        state["w"] = epoch + 1
        return 1.0

    run = train_epochs(step, lambda: next(scores), [0] * 3, lambda: dict(state), state.update, None, None,
                       deadline=time.perf_counter())  # fmt: skip
    assert run.stopped == "budget" and len(run.curve) == 1 and run.best == 1 and state["w"] == 1
    roomy = train_epochs(step, lambda: next(scores), [0] * 2, lambda: dict(state), state.update, None, None,
                         deadline=time.perf_counter() + 3600)  # fmt: skip
    assert roomy.stopped == "done" and len(roomy.curve) == 2


def test_auto_tries_every_named_schedule_with_the_options_given_to_each():
    tried = candidate_schedules("auto", regularize="l2sp", rank=None, seed=3)
    assert [s.name for s in tried] == ["gentle", "deep"] and all(s.regularize == "l2sp" and s.seed == 3 for s in tried)
    assert tried[1] == Schedule.preset("deep", regularize="l2sp", seed=3) and tried[1].patience is None
    assert candidate_schedules("deep") == [Schedule.preset("deep")]
    for bad, said in ((dict(adapter="qlora"), "--adapter"), (dict(regularize="ewc"), "--regularize"),
                      (dict(adapt="mmd"), "--adapt"), (dict(rank=0), "--rank")):  # fmt: skip
        with pytest.raises(FeaturizerError, match=said):
            Schedule(**bad)


def test_the_budget_option_reads_seconds_minutes_and_none():
    from commands._finetune import parse_budget

    assert [parse_budget(None, None, v) for v in ("300", "90s", "5m", "1h", "none", None)] == [
        300, 90, 300, 3600, None, 300
    ]  # fmt: skip
    result = xfer("finetune", ".", "--budget", "soon", "-o", "x", ok=False)
    assert result.exit_code == 2 and "soon" in result.output


def test_l2sp_penalises_only_what_trains_and_only_its_distance_from_the_start():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    anchor = StartingPoint(net, alpha=0.5)
    assert float(anchor.penalty().detach()) == 0.0
    with torch.no_grad():
        net[0].weight.add_(1.0)  # 6 weights moved by 1
        net[1].bias.add_(2.0)  # 2 biases moved by 2
    assert float(anchor.penalty().detach()) == pytest.approx(0.5 / 2 * (6 + 8))
    net[1].bias.requires_grad_(False)  # frozen: not penalised
    assert float(anchor.penalty().detach()) == pytest.approx(0.5 / 2 * 6)
    anchor.penalty().backward()  # the gradient pulls back toward the start
    assert torch.allclose(net[0].weight.grad, torch.full((2, 3), 0.5))


def test_the_domain_classifiers_gradient_reaches_the_features_reversed():
    from pipelines.finetune._dann import domain_classifier, domain_loss, reversal_weight

    assert reversal_weight(0.0) == 0.0 and reversal_weight(1.0, 2.0) == pytest.approx(2.0, abs=1e-3)
    assert 0 < reversal_weight(0.1) < reversal_weight(0.5) < 1
    torch.manual_seed(0)
    classifier = domain_classifier(4).eval()  # no dropout: the same forward twice
    source, target = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4)
    domain_loss(classifier, source, target, 0.5).backward()
    reversed_grad = source.grad.clone()
    source.grad = None
    plain = torch.cat([source, target])
    labels = torch.cat([torch.zeros(3), torch.ones(3)])
    torch.nn.functional.binary_cross_entropy_with_logits(classifier(plain).squeeze(1), labels).backward()
    assert torch.allclose(reversed_grad, -0.5 * source.grad, atol=1e-6)


def test_lora_trains_only_its_adapters_and_merges_into_an_ordinary_backbone(network):
    pytest.importorskip("peft", reason="peft is not installed (pip install -e '.[tune]')")
    import copy

    from pipelines.finetune._lora import add_image_lora, merge_lora, trainable_parameters

    net = copy.deepcopy(network).eval()
    names = set(net.state_dict())
    stages = stage_groups(net)
    adapters = add_image_lora(net, stages[:2], rank=4)
    assert all(".lora_" in n for stage in adapters for n in stage) and all(adapters)
    freeze_all_but(net, adapters, 2)
    assert 0 < trainable_parameters(net) < 0.05 * sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        for n, p in net.named_parameters():
            if "lora_B" in n:
                p.add_(0.01)  # a trained adapter: B is zero at the start
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    adapted = net(x)
    merge_lora(net)
    assert set(net.state_dict()) == names  # the base model's names: featurize loads it without peft
    assert torch.allclose(net(x), adapted, atol=1e-4) and not torch.allclose(network.eval()(x), adapted, atol=1e-3)


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
    for run, budget in (("a", None), ("b", 600)):  # a budget times one batch first: it must not change the run
        finetune(small, "efficientnet_lite0", tmp_path / run, schedule, progress=False, budget=budget)
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


def small_digits(digits_dir, tmp_path, digits=("1", "7", "4")):
    small = tmp_path / "small"
    for digit in digits:
        shutil.copytree(digits_dir / "train" / digit, small / digit)
    return small


def test_auto_tries_both_schedules_keeps_the_best_on_validation_or_the_frozen_backbone(digits_dir, tmp_path):
    """The report lists each schedule tried beside the frozen probe, draws the curves, and keeps the
    frozen backbone exactly when no schedule beat the probe on the validation split."""
    from safetensors.torch import load_file

    from featurizer import get_config
    from featurizer.backbones._describe import load_backbone
    from featurizer.spec._weights import default_weights

    tiny = dict(head_epochs=1, stages=1, epochs_per_stage=1, batch_size=16)
    result = xfer("finetune", small_digits(digits_dir, tmp_path), "-o", tmp_path / "auto",
                  *[f"--{k.replace('_', '-')}={v}" for k, v in tiny.items() if k != "batch_size"])  # fmt: skip
    report = json.loads((tmp_path / "auto" / "report.json").read_text())
    assert [t["schedule"] for t in report["trials"]] in (["gentle", "deep"], ["deep", "gentle"])
    assert "frozen probe: validation accuracy" in result.output and f"kept: {report['chosen']}" in result.output
    best = max(t["best_val_accuracy"] for t in report["trials"])
    assert (report["chosen"] == "frozen") == (best <= report["probe_val_accuracy"])
    assert (tmp_path / "auto" / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = load_file(tmp_path / "auto" / "model.safetensors")
    config = get_config("efficientnet_lite0")
    pretrained = load_backbone(config, default_weights(config)).model.state_dict()
    same = all(torch.equal(saved[k], pretrained[k]) for k in pretrained)
    assert same == (report["chosen"] == "frozen")


def test_dann_adapts_to_target_images_and_needs_them(digits_dir, tmp_path):
    small = small_digits(digits_dir, tmp_path, ("1", "7"))
    refused = xfer("finetune", small, "--adapt", "dann", "--schedule", "gentle", "-o", tmp_path / "x", ok=False)
    assert refused.exit_code == 1 and "--target" in refused.output and "Traceback" not in refused.output
    schedule = Schedule(head_epochs=0, stages=1, epochs_per_stage=1, batch_size=8, adapt="dann")
    report = finetune(small, "efficientnet_lite0", tmp_path / "d", schedule, target=digits_dir / "test" / "1",
                      progress=False)  # fmt: skip
    plain = finetune(small, "efficientnet_lite0", tmp_path / "p", replace_adapt(schedule), progress=False)
    # the domain classifier trains beside the head: more trainable parameters, the same backbone stages
    assert report.trials[0]["trainable_parameters"] > plain.trials[0]["trainable_parameters"]
    assert (tmp_path / "d" / "model.safetensors").is_file()


def replace_adapt(schedule):
    from dataclasses import replace

    return replace(schedule, adapt="none")


def test_text_lora_trains_a_small_share_and_saves_a_plain_encoder(tmp_path):
    pytest.importorskip("peft", reason="peft is not installed (pip install -e '.[tune]')")
    from safetensors.torch import load_file

    from tests.test_tasks import news_rows, write_table

    rows = [{"text": r["text"], "label": r["topic"]} for r in news_rows(18, 0)]
    write_table(tmp_path / "news.csv", rows)
    full = finetune(tmp_path / "news.csv", "minilm", tmp_path / "full", Schedule(pairs=16), progress=False)
    lora = finetune(tmp_path / "news.csv", "minilm", tmp_path / "lora", Schedule(pairs=16, adapter="lora", rank=4),
                    progress=False)  # fmt: skip
    assert 0 < lora.trainable_parameters < 0.02 * full.trainable_parameters
    weights = load_file(tmp_path / "lora" / "model.safetensors")
    assert not any("lora" in k for k in weights) and set(weights) == set(
        load_file(tmp_path / "full" / "model.safetensors")
    )
    out = tmp_path / "lora.h5"
    featurize(tmp_path / "news.csv", str(tmp_path / "lora"), "-1", output=out, cache_dir=tmp_path / "c", progress=False)
    with FeatureFile(out) as f:
        assert f.read().shape[0] == len(rows)


def test_texts_take_l2sp_and_dann_toward_unlabelled_texts(tmp_path):
    from tests.test_tasks import news_rows, write_table

    rows = [{"text": r["text"], "label": r["topic"]} for r in news_rows(18, 0)]
    write_table(tmp_path / "news.csv", rows)
    write_table(tmp_path / "other.csv", [{"text": r["text"].upper()} for r in news_rows(10, 1)])
    plain = finetune(tmp_path / "news.csv", "minilm", tmp_path / "p", Schedule(pairs=16), progress=False)
    both = Schedule(pairs=16, regularize="l2sp", adapt="dann")
    report = finetune(tmp_path / "news.csv", "minilm", tmp_path / "d", both, target=tmp_path / "other.csv",
                      progress=False)  # fmt: skip
    assert report.trainable_parameters > plain.trainable_parameters  # the domain classifier's
    assert report.schedule["regularize"] == "l2sp" and report.schedule["adapt"] == "dann"
    refused = xfer("finetune", tmp_path / "news.csv", "-m", "minilm", "--target", tmp_path / "other.csv",
                   "-o", tmp_path / "x", ok=False)  # fmt: skip
    assert refused.exit_code == 1 and "--adapt dann" in refused.output and "Traceback" not in refused.output


def test_bad_input_gets_one_line_a_budget_too_small_a_target_of_another_modality_one_class(digits_dir, tmp_path):
    from tests.test_tasks import news_rows, write_table

    small = small_digits(digits_dir, tmp_path, ("1", "7"))
    too_short = xfer("finetune", small, "--budget", "0.01s", "-o", tmp_path / "x", ok=False)
    assert too_short.exit_code == 1 and "--budget" in too_short.output and "too small for one epoch" in too_short.output
    (tmp_path / "texts.csv").write_text("text\nthe first sentence\nthe second one\n")
    other = xfer("finetune", small, "--adapt", "dann", "--target", tmp_path / "texts.csv", "-o", tmp_path / "x",
                 ok=False)  # fmt: skip
    assert other.exit_code == 1 and "--target must hold unlabelled images" in other.output
    one_class = tmp_path / "one"
    shutil.copytree(small / "1", one_class / "1")
    alone = xfer("finetune", one_class, "-o", tmp_path / "x", ok=False)
    assert alone.exit_code == 1 and "fewer than two classes" in alone.output
    for result in (too_short, other, alone):
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert "Traceback" not in result.output and len(errors) == 1
    write_table(tmp_path / "news.csv", [{"text": r["text"], "label": r["topic"]} for r in news_rows(18, 0)])
    texts = xfer("finetune", tmp_path / "news.csv", "-m", "minilm", "--budget", "0.01s", "-o", tmp_path / "x", ok=False)
    assert texts.exit_code == 1 and "--budget 0.01s ran out before the first batch" in texts.output
    assert not (tmp_path / "x").exists()


def test_l2sp_with_a_huge_weight_leaves_the_weights_at_the_start(tmp_path):
    """Plain tuning moves some weight by about the learning rate per step (Adam's steps); a huge
    pull toward the start keeps every weight within one step of it."""
    from safetensors.torch import load_file

    from featurizer import get_config
    from featurizer.spec._weights import default_weights
    from tests.test_tasks import news_rows, write_table

    rows = [{"text": r["text"], "label": r["topic"]} for r in news_rows(18, 0)]
    write_table(tmp_path / "news.csv", rows)
    start = load_file(f"{default_weights(get_config('minilm')).location}/model.safetensors")
    drift = {}
    for name, regularize in (("plain", "none"), ("huge", "l2sp")):
        schedule = Schedule(pairs=96, regularize=regularize, l2sp_alpha=1e6)
        finetune(tmp_path / "news.csv", "minilm", tmp_path / name, schedule, progress=False)
        tuned = load_file(tmp_path / name / "model.safetensors")
        drift[name] = max(float((tuned[k] - start[k]).abs().max()) for k in tuned if k in start)
    rate = Schedule().text_lr
    assert drift["huge"] < rate < 3 * rate < drift["plain"]


def test_texts_keep_the_frozen_encoder_when_tuning_loses_on_validation(tmp_path, monkeypatch):
    """The tuned encoder is kept only when its probe beats the frozen one's on the held-out texts:
    higher accuracy, or a tie and a lower log-loss. Here the scores are set (frozen first, then
    tuned) so that tuning ties on accuracy and loses on log-loss."""
    from safetensors.torch import load_file

    import pipelines.finetune._finetune as tuning
    from featurizer import get_config
    from featurizer.spec._weights import default_weights
    from tests.test_tasks import news_rows, write_table

    assert tuning.beats((0.9, 0.2), (0.8, 0.1)) and tuning.beats((0.8, 0.1), (0.8, 0.2))
    assert not tuning.beats((0.8, 0.3), (0.8, 0.2)) and not tuning.beats((0.7, 0.0), (0.8, 0.9))
    scores = iter([(0.9, 0.3), (0.9, 0.5)] * 2)
    monkeypatch.setattr(tuning, "text_probe_scores", lambda *args: next(scores))
    rows = [{"text": r["text"], "label": r["topic"]} for r in news_rows(18, 0)]
    write_table(tmp_path / "news.csv", rows)
    auto = candidate_schedules("auto", pairs=32)  # --schedule auto, with few pairs
    report = finetune(tmp_path / "news.csv", "minilm", tmp_path / "t", auto, progress=False)
    assert report.chosen == "frozen" and report.best_val_accuracy == report.probe_val_accuracy == 0.9
    assert any("did not beat the frozen probe" in note for note in report.notes)
    start = load_file(f"{default_weights(get_config('minilm')).location}/model.safetensors")
    saved = load_file(tmp_path / "t" / "model.safetensors")
    assert all(torch.equal(saved[k], start[k]) for k in saved if k in start)
    named = finetune(tmp_path / "news.csv", "minilm", tmp_path / "n", Schedule(pairs=32), progress=False)
    assert named.chosen == "contrastive" and any("kept as asked" in note for note in named.notes)
