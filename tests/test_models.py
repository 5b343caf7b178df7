"""Tests for model_classes: registry, shapes, parameter counts, GCN joint identity, fusion masking, weights."""
from __future__ import annotations

import functools
import http.server
import math
import socket
import threading

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet34

import model_classes as M
from common.errors import CheckpointMismatchError, UsageError
from data_loaders import hand_graph
from engine.checkpoint import fusion_from_checkpoints, load_checkpoint, make_checkpoint, save_checkpoint
from engine.recipes import recipe
from model_classes import resnet as resnet_mod

C = 18
NO_DOWNLOAD = {"resnet34": {"weights": None}, "fusion": {"resnet": {"weights": None}}}

#: Parameter counts for 18 classes (docs/models.md).
PARAM_COUNTS = {
    "mlp": 5_426,
    "cnn": 19_138,
    "gcn": 12_370,
    "resnet34": 21_293_906,
    "fusion": 21_458_934,
}
VARIANT_COUNTS = [
    ("mlp", {"hidden": (256, 128)}, 46_226),
    ("gcn", {"readout": "mean", "node_embedding": False}, 9_682),
    ("gcn", {"node_features": "xy+bone"}, 12_498),
    ("fusion", {"resnet": {"weights": None}, "mode": "logit"}, 21_306_277),
]
#: The same counts split by top-level submodule: the arithmetic of docs/models.md.
PART_COUNTS = {
    "mlp": {"features": 2_752 + 2_080, "fc": 594},
    "cnn": {"features": 16_816, "fc": 2_322},
    "gcn": {"convs": 192 + 4_160 + 4_160, "node_embedding": 1_344, "readout_weight": 1_344, "fc": 1_170},
    "resnet34": {"backbone": 21_284_672, "fc": 9_234},
    "fusion": {"image_branch": 21_293_906, "graph_branch": 12_370, "head": 147_968 + 4_626 + 64},
}

# index<->pinky and middle<->ring: an automorphism of the bone graph (wrist and thumb fixed)
MIRROR = list(range(21))
for a, b in [(5, 17), (6, 18), (7, 19), (8, 20), (9, 13), (10, 14), (11, 15), (12, 16)]:
    MIRROR[a], MIRROR[b] = b, a


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_batch(b: int, image_size: int | None = None, seed: int = 0, has_landmarks: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {
        "landmarks": torch.randn(b, 21, 2, generator=g) * 0.5,
        "has_landmarks": torch.full((b,), has_landmarks),
        "label": torch.randint(0, C, (b,), generator=g),
        "index": torch.arange(b),
    }
    if image_size:
        batch["image"] = torch.randn(b, 3, image_size, image_size, generator=g)
    return batch


@functools.lru_cache(maxsize=None)
def big(name: str) -> torch.nn.Module:
    """The default resnet34/fusion models (weights=None), built once and shared read-only: CPU time."""
    torch.manual_seed(0)
    return M.create_model(name, C, **NO_DOWNLOAD.get(name, {}))


# ----------------------------------------------------------------- registry
def test_registry_lists_and_specs():
    assert M.list_models() == ["mlp", "cnn", "gcn", "resnet34", "fusion"]
    expect = {
        "mlp": (("landmarks",), None),
        "cnn": (("image",), 64),
        "gcn": (("landmarks",), None),
        "resnet34": (("image",), 128),
        "fusion": (("image", "landmarks"), 128),
    }
    for name, (inputs, size) in expect.items():
        spec = M.model_spec(name)
        assert isinstance(spec, M.ModelSpec)
        assert (spec.name, spec.inputs, spec.image_size) == (name, inputs, size)
        assert {"lr", "batch_size", "epochs", "weight_decay", "scheduler", "patience", "augment"} <= set(recipe(name))
        assert recipe(name)["scheduler"] in ("none", "cosine", "onecycle")  # engine.train.SCHEDULERS
        assert recipe(name)["augment"]["rotation_deg"] <= 30
        assert ("brightness" in recipe(name)["augment"]) == ("image" in inputs)
    for name in ("mlp", "gcn"):
        r = recipe(name)
        assert (r["lr"], r["batch_size"], r["epochs"]) == (1e-3, 128, 8)
    for name in ("resnet34", "fusion"):
        r = recipe(name)
        assert (r["lr"], r["batch_size"], r["epochs"]) == (1e-4, 32, 8)
    assert M.model_spec("resnet34").default_hparams["weights"] == "imagenet"
    assert M.model_spec("gcn").default_hparams["readout"] == "weighted"
    # specs are copies
    recipe("mlp")["lr"] = 99
    M.model_spec("fusion").default_hparams["resnet"]["weights"] = "x"
    assert recipe("mlp")["lr"] == 1e-3
    assert M.model_spec("fusion").default_hparams["resnet"]["weights"] == "imagenet"


def test_recipe_augment_fits_augment_config():
    from data_loaders.augment import AugmentConfig

    for name in M.list_models():
        augment = recipe(name)["augment"]
        cfg = AugmentConfig.from_recipe(augment)  # what engine.train does with the recipe
        if augment is None:
            assert cfg is None, name
            continue
        assert isinstance(cfg, AugmentConfig), name
        for k, v in augment.items():  # recipes are written in AugmentConfig's own terms
            assert getattr(cfg, k) == (tuple(v) if isinstance(v, list) else v), (name, k)


def test_unknown_name_and_hparams():
    with pytest.raises(M.UnknownModelError) as e:
        M.create_model("resnet50", C)
    msg = str(e.value)
    assert "resnet50" in msg and all(n in msg for n in M.list_models())
    with pytest.raises(KeyError):
        M.model_spec("nope")
    with pytest.raises(M.UnknownHyperparameterError, match="'width'.*valid: hidden, dropout"):
        M.create_model("mlp", C, width=3)
    with pytest.raises(M.UnknownHyperparameterError, match="'bogus'"):
        M.create_model("fusion", C, resnet={"weights": None}, gcn={"bogus": 1})
    with pytest.raises(ValueError, match="unknown extra edge set"):
        M.create_model("gcn", C, extra_edges=("toes",))
    with pytest.raises(ValueError, match="readout"):
        M.create_model("gcn", C, readout="max")
    with pytest.raises(ValueError, match="mode"):
        M.create_model("fusion", C, resnet={"weights": None}, mode="early")


def test_register_model_validates():
    with pytest.raises(ValueError, match="already registered"):
        M.register_model("mlp", inputs=("landmarks",))(lambda num_classes: None)
    with pytest.raises(ValueError, match="image_size"):
        M.register_model("x_img", inputs=("image",))
    with pytest.raises(ValueError, match="inputs"):
        M.register_model("x_bad", inputs=("audio",))


# ----------------------------------------------------------------- shapes, counts, round trip
@pytest.mark.parametrize("name", ["mlp", "cnn", "gcn", "resnet34", "fusion"])
def test_forward_shape_and_param_count(name):
    spec = M.model_spec(name)
    model = big(name) if name in ("resnet34", "fusion") else M.create_model(name, C)
    b = 2 if spec.image_size == 128 else 4
    model.eval()
    with torch.no_grad():
        out = model(make_batch(b, spec.image_size))
    assert out.shape == (b, C) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert n_params(model) == PARAM_COUNTS[name]
    assert tuple(model.inputs) == spec.inputs
    if name in ("gcn", "resnet34"):
        with torch.no_grad():
            z = model.embed(make_batch(b, spec.image_size))
        assert z.shape == (b, model.embed_dim)
    parts: dict[str, int] = {}
    for key, p in model.named_parameters():
        parts[key.split(".")[0]] = parts.get(key.split(".")[0], 0) + p.numel()
    assert parts == PART_COUNTS[name]


@pytest.mark.parametrize("name,hparams,count", VARIANT_COUNTS)
def test_variant_param_counts(name, hparams, count):
    assert n_params(M.create_model(name, C, **hparams)) == count


def _shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "name,hparams",
    [
        ("mlp", {}),
        ("mlp", {"hidden": [128, 64, 32], "dropout": 0.3}),
        ("cnn", {}),
        ("cnn", {"channels": (8, 16, 32), "separable": (False, True, True)}),
        ("gcn", {}),
        ("gcn", {"node_features": "xy+bone", "extra_edges": ["palm", "tips"], "readout": "flatten", "hidden": 32}),
        ("gcn", {"readout": "mean", "node_embedding": False}),
        ("resnet34", {"weights": None, "dropout": 0.2}),
        ("fusion", {"resnet": {"weights": None}, "mode": "logit", "gcn": {"hidden": 32}}),
    ],
)
def test_hparams_round_trip(name, hparams):
    model = M.create_model(name, C, **hparams)
    again = M.create_model(name, C, **model.hparams)
    assert type(again) is type(model)
    assert _shapes(again) == _shapes(model)
    assert again.hparams == model.hparams
    if name in ("resnet34", "fusion"):
        assert (model.hparams["weights"] if name == "resnet34" else model.hparams["resnet"]["weights"]) is None


# ----------------------------------------------------------------- GCN
def test_mirror_is_a_graph_automorphism():
    adj = hand_graph.adjacency()
    p = torch.tensor(MIRROR)
    assert torch.equal(adj[p][:, p], adj)


def test_gcn_keeps_joint_identity_mean_pool_does_not():
    torch.manual_seed(0)
    batch = make_batch(5)
    mirrored = dict(batch, landmarks=batch["landmarks"][:, MIRROR])
    seed_style = M.create_model("gcn", C, readout="mean", node_embedding=False).eval()
    default = M.create_model("gcn", C).eval()
    flatten = M.create_model("gcn", C, readout="flatten", node_embedding=False).eval()
    weighted_only = M.create_model("gcn", C, node_embedding=False).eval()
    with torch.no_grad():
        weighted_only.readout_weight.normal_()  # as after training (it starts as the mean)
        torch.testing.assert_close(seed_style(mirrored), seed_style(batch))
        for model in (default, flatten, weighted_only):
            assert not torch.allclose(model(mirrored), model(batch), atol=1e-4)


@pytest.mark.parametrize("hparams", [{}, {"node_features": "xy+bone", "extra_edges": ("palm",), "readout": "flatten"}])
def test_gcn_batched_equals_per_sample(hparams):
    torch.manual_seed(0)
    model = M.create_model("gcn", C, **hparams).eval()
    batch = make_batch(6)
    with torch.no_grad():
        whole = model(batch)
        single = torch.cat([model({k: v[i : i + 1] for k, v in batch.items()}) for i in range(6)])
    torch.testing.assert_close(whole, single, rtol=1e-5, atol=1e-5)


def test_dense_gcn_matches_sparse_gcnconv_on_cpu():
    """DenseGCNConv over the fixed adjacency == GCNConv over one batched edge_index (no scatter extras)."""
    from torch_geometric.nn import GCNConv

    torch.manual_seed(0)
    model = M.create_model("gcn", C, node_features="xy+bone", extra_edges=("tips",)).eval()
    dense = model.convs[0]
    sparse = GCNConv(4, 64)
    with torch.no_grad():
        sparse.lin.weight.copy_(dense.lin.weight)
        sparse.bias.copy_(dense.bias)
    b = 3
    x = torch.randn(b, 21, 4)
    ei = hand_graph.batched_edge_index(hand_graph.edge_index(("tips",)), b)
    with torch.no_grad():
        torch.testing.assert_close(sparse(x.reshape(b * 21, 4), ei).reshape(b, 21, 64), dense(x, model.adj))


# ----------------------------------------------------------------- learning
def _loss_after_steps(model, batch, steps, lr):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps + 1):
        loss = F.cross_entropy(model(batch), batch["label"])
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


@pytest.mark.parametrize("name,steps,lr", [("mlp", 30, 1e-2), ("gcn", 30, 1e-2), ("cnn", 15, 1e-2)])
def test_small_models_fit_a_tiny_batch(name, steps, lr):
    torch.manual_seed(0)
    model = M.create_model(name, C, dropout=0.0)
    batch = make_batch(16, M.model_spec(name).image_size, seed=1)
    losses = _loss_after_steps(model.train(), batch, steps, lr)
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("name", ["resnet34", "fusion"])
def test_big_models_take_a_step(name):
    torch.manual_seed(0)
    hp = {"resnet34": {"weights": None}, "fusion": {"resnet": {"weights": None}, "head_dropout": 0.0, "modality_dropout": 0.0}}
    model = M.create_model(name, C, **hp[name]).train()
    batch = make_batch(2, 128, seed=2)
    losses = _loss_after_steps(model, batch, 2, 1e-3)
    assert all(math.isfinite(x) for x in losses)
    assert losses[2] < losses[0], losses


# ----------------------------------------------------------------- fusion
@pytest.mark.parametrize("mode", ["feature", "logit"])
def test_fusion_without_landmarks_uses_image_only(mode):
    torch.manual_seed(0)
    model = M.create_model("fusion", C, resnet={"weights": None}, mode=mode, gcn={"hidden": 16}).eval()
    batch = make_batch(2, 128, has_landmarks=False)
    other = dict(batch, landmarks=torch.randn(2, 21, 2) * 3)
    zeros = dict(batch, landmarks=torch.zeros(2, 21, 2))
    with torch.no_grad():
        out = model(batch)
        torch.testing.assert_close(model(other), out, rtol=0, atol=0)
        torch.testing.assert_close(model(zeros), out, rtol=0, atol=0)
        if mode == "logit":
            torch.testing.assert_close(out, model.image_branch(batch))
        present = dict(other, has_landmarks=torch.ones(2, dtype=torch.bool))
        assert not torch.allclose(model(present), out)


def test_fusion_freezing_and_modality_dropout():
    torch.manual_seed(0)
    model = M.create_model(
        "fusion", C, resnet={"weights": None}, gcn={"hidden": 16}, freeze_branches=True, modality_dropout=0.5
    )
    model.train()
    assert not model.image_branch.training and not model.graph_branch.training and model.head.training
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("head.") for n in trainable)
    present = model.present_mask({"has_landmarks": torch.ones(4000, dtype=torch.bool)})
    assert 0.4 < present.float().mean().item() < 0.6
    assert not model.eval().present_mask({"has_landmarks": torch.zeros(3, dtype=torch.bool)}).any()
    # feature mode: branch heads unused and frozen, branches themselves trainable
    unfrozen = M.create_model("fusion", C, resnet={"weights": None}, gcn={"hidden": 16})
    frozen = {n for n, p in unfrozen.named_parameters() if not p.requires_grad}
    assert frozen == {"image_branch.fc.weight", "image_branch.fc.bias", "graph_branch.fc.weight", "graph_branch.fc.bias"}


class _NotPlainData:
    """Pickled as a class reference: refused by torch.load(weights_only=True)."""


def test_fusion_from_unimodal_and_checkpoints(tmp_path):
    torch.manual_seed(1)
    res = big("resnet34")
    gcn = M.create_model("gcn", C, hidden=32)
    fused = M.FusionModel.from_unimodal(res, gcn, C, mode="logit", modality_dropout=0.0)
    assert fused.hparams["gcn"]["hidden"] == 32 and fused.mode == "logit"
    for a, b in ((fused.image_branch, res), (fused.graph_branch, gcn)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert fused.image_branch is not res
    # engine.checkpoint.fusion_from_checkpoints: branches from trained checkpoints, each one checked
    names = [f"class{i}" for i in range(C)]

    def save(model, name, path, **changes):
        ck = make_checkpoint(model, model_name=name, class_names=names,
                             preprocessing={"inputs": list(model.inputs), "landmark_norm": "wrist"})
        return save_checkpoint(path, {**ck, **changes})

    res_path, gcn_path = save(res, "resnet34", tmp_path / "resnet34.pt"), save(gcn, "gcn", tmp_path / "gcn.pt")
    load = functools.partial(fusion_from_checkpoints, num_classes=C, class_names=names, landmark_norm="wrist")
    other = load({"resnet34": res_path, "gcn": gcn_path}, hparams={"mode": "logit"})
    torch.testing.assert_close(other.graph_branch.fc.weight, gcn.fc.weight)
    torch.testing.assert_close(other.image_branch.fc.weight, res.fc.weight)
    assert other.hparams["gcn"]["hidden"] == 32 and other.mode == "logit"  # architecture from the checkpoint
    # a saved checkpoint may hold lists where the model has tuples (extra_edges=()): the same value
    ck = load_checkpoint(gcn_path)
    listed = save(gcn, "gcn", tmp_path / "listed.pt", hparams={**ck["hparams"], "extra_edges": []})
    torch.testing.assert_close(load({"gcn": listed}, hparams={"resnet": {"weights": None}}).graph_branch.fc.weight,
                               gcn.fc.weight)
    bad = save(gcn, "gcn", tmp_path / "bad.pt", hparams={**ck["hparams"], "hidden": 16})
    with pytest.raises(CheckpointMismatchError, match="weights do not fit model 'gcn'"):
        load({"gcn": bad})
    with pytest.raises(CheckpointMismatchError, match="landmark_norm"):
        load({"gcn": gcn_path}, landmark_norm="bbox")
    with pytest.raises(CheckpointMismatchError, match="classes"):
        load({"gcn": gcn_path}, class_names=names[::-1])
    torch.save({**load_checkpoint(gcn_path), "extra": _NotPlainData()}, tmp_path / "unsafe.pt")
    with pytest.raises(CheckpointMismatchError, match="cannot read checkpoint"):
        load({"gcn": tmp_path / "unsafe.pt"})
    with pytest.raises(CheckpointMismatchError, match="model: checkpoint has 'gcn', asked for 'resnet34'"):
        load({"resnet34": gcn_path, "gcn": gcn_path})
    with pytest.raises(UsageError, match="valid keys: resnet34, gcn"):
        load({"resnet": res_path})
    with pytest.raises(ValueError, match="classes"):
        M.FusionModel.from_unimodal(res, M.create_model("gcn", 5), C)
    # only one trained branch: the other comes from the hparams
    half = M.FusionModel.from_unimodal(None, gcn, C, resnet={"weights": None})
    torch.testing.assert_close(half.graph_branch.fc.weight, gcn.fc.weight)
    assert half.pretrained == {"resnet": None, "gcn": "unimodal model"}
    with pytest.raises(TypeError, match="gcn="):
        M.FusionModel.from_unimodal(res, gcn, C, gcn={"hidden": 32})


# ----------------------------------------------------------------- ResNet weights
@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """A torchvision resnet34 state dict (random, standing in for ImageNet) saved to a file."""
    torch.manual_seed(123)
    state = resnet34(weights=None).state_dict()
    d = tmp_path_factory.mktemp("served")
    path = d / "resnet34-fake.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture
def http_dir(fake_weights, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(fake_weights[0].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backbone_equal(model, state) -> bool:
    own = model.backbone.state_dict()
    return all(torch.equal(own[k], state[k]) for k in own)


def test_load_imagenet_weights_over_http_then_from_cache(fake_weights, http_dir, tmp_path):
    path, state = fake_weights
    cache = tmp_path / "hub"
    loaded = M.load_imagenet_weights(url=f"{http_dir}/{path.name}", model_dir=cache)
    assert (cache / path.name).is_file()
    model = M.create_model("resnet34", C, weights=None)
    M.load_backbone_weights(model.backbone, loaded)
    assert _backbone_equal(model, state)
    # once cached, no network is needed (an unreachable URL with the same file name still works)
    again = M.load_imagenet_weights(url=f"http://127.0.0.1:{_closed_port()}/{path.name}", model_dir=cache)
    assert torch.equal(again["conv1.weight"], state["conv1.weight"])


def test_unreachable_url_gives_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    url = f"http://127.0.0.1:{_closed_port()}/resnet34-b627a593.pth"
    with pytest.raises(M.PretrainedWeightsError) as e:
        M.load_imagenet_weights(url=url, model_dir=tmp_path)
    msg = str(e.value)
    assert url in msg and "weights=None" in msg and "weights='<path>" in msg
    assert str(tmp_path / "resnet34-b627a593.pth") in msg


def test_imagenet_hparam_goes_through_load_imagenet_weights(fake_weights, monkeypatch):
    _, state = fake_weights
    calls = []

    def fake(url=resnet_mod.IMAGENET_URL, model_dir=None, **kw):
        calls.append(url)
        return state

    monkeypatch.setattr(resnet_mod, "load_imagenet_weights", fake)
    model = M.create_model("resnet34", C)  # default weights="imagenet"
    assert calls == [M.IMAGENET_URL]
    assert _backbone_equal(model, state)
    assert model.pretrained == "imagenet" and model.hparams["weights"] is None
    fused = M.create_model("fusion", C, gcn={"hidden": 16})
    assert len(calls) == 2 and fused.hparams["resnet"]["weights"] is None
    # rebuilding from the stored hparams does not download again
    M.create_model("fusion", C, **fused.hparams)
    assert len(calls) == 2


def test_weights_from_local_path(fake_weights, tmp_path):
    path, state = fake_weights
    model = M.create_model("resnet34", C, weights=str(path))
    assert _backbone_equal(model, state)
    assert model.pretrained == str(path) and model.hparams["weights"] is None
    # a trained classifier's checkpoint (with fc of another class count and DDP prefix) works too
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, ckpt)
    again = M.create_model("resnet34", 5, weights=ckpt)
    assert _backbone_equal(again, state)
    # missing keys are named
    broken = tmp_path / "broken.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.")}, broken)
    with pytest.raises(M.PretrainedWeightsError, match=r"missing key\(s\): layer4\.0\.") as e:
        M.create_model("resnet34", C, weights=broken)
    assert "0 unexpected" in str(e.value)
    with pytest.raises(M.PretrainedWeightsError, match="neither 'imagenet' nor an existing file"):
        M.create_model("resnet34", C, weights=str(tmp_path / "absent.pth"))
    # a weights file is read with weights_only=True: pickled objects are refused, never run
    pickled = tmp_path / "pickled.pth"
    torch.save({**state, "extra": _NotPlainData()}, pickled)
    with pytest.raises(M.PretrainedWeightsError, match="could not read weights file"):
        M.create_model("resnet34", C, weights=pickled)
    # the command line prints these messages alone (one `error:` line, no traceback)
    from common.errors import UserFacingError

    assert issubclass(M.PretrainedWeightsError, UserFacingError)
