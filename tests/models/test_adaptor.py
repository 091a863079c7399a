"""The Adaptor module: its architecture, sample independence (the original's trap), loss, head."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medtl.errors import ConfigError
from medtl.models.adaptor import Adaptor, adaptor_head


def make(**kwargs) -> Adaptor:
    torch.manual_seed(0)
    return Adaptor(kwargs.pop("vision_dim", 48), kwargs.pop("text_dim", 32), **kwargs)


def test_architecture_follows_the_specification():
    a = make()
    assert a.vision_projection.bias is None and a.text_projection.bias is None
    assert a.vision_projection.weight.shape == (768, 48) and a.text_projection.weight.shape == (768, 32)
    assert len(a.layers) == 2
    layer = a.layers[0]
    assert layer.attn.num_heads == 12 and layer.attn.batch_first and layer.attn.dropout == 0.1
    assert (layer.linear1.in_features, layer.linear1.out_features) == (768, 2048)
    assert layer.dropout.p == layer.dropout1.p == 0.1
    assert a.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert a.spec["dim"] == 768 and a.spec["image_loss_weight"] == 0.75


def test_post_norm_outputs_are_unit_vectors():
    a = make().eval()
    img, txt = a(torch.randn(5, 48), torch.randn(5, 32))
    assert img.shape == txt.shape == (5, 768)
    assert torch.allclose(img.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(txt.norm(dim=1), torch.ones(5), atol=1e-5)


def test_a_samples_output_does_not_depend_on_the_other_samples():
    a = make().eval()
    g = torch.Generator().manual_seed(1)
    image, text = torch.randn(6, 48, generator=g), torch.randn(6, 32, generator=g)
    img_all, txt_all = a(image, text)
    img_one, txt_one = a(image[:1], text[:1])
    assert torch.allclose(img_all[:1], img_one, atol=1e-5) and torch.allclose(txt_all[:1], txt_one, atol=1e-5)
    others = torch.randn(6, 48, generator=g)
    others[0] = image[0]
    swapped = torch.randn(6, 32, generator=g)
    swapped[0] = text[0]
    assert torch.allclose(a(others, swapped)[0][0], img_all[0], atol=1e-5)
    assert torch.allclose(a.encode_image(image)[:1], a.encode_image(image[:1]), atol=1e-5)


def test_sequence_first_attention_would_mix_the_batch():
    """The trap, shown: the same weights on (B, D) as one sequence make outputs batch-dependent."""
    a = make().eval()
    attn = a.layers[0].attn
    x = torch.randn(4, 768)
    mixed = attn(x, x, x, need_weights=False)[0]  # unbatched (L=4, E): one sequence of 4 tokens
    alone = attn(x[:1], x[:1], x[:1], need_weights=False)[0]
    assert not torch.allclose(mixed[:1], alone, atol=1e-4)


def test_the_image_is_updated_by_the_text():
    a = make().eval()
    image = torch.randn(3, 48)
    img1, _ = a(image, torch.randn(3, 32))
    img2, _ = a(image, torch.randn(3, 32))
    assert not torch.allclose(img1, img2, atol=1e-4)


def test_loss_trains_the_logit_scale_and_both_projections():
    a = make()
    loss = a.loss(torch.randn(8, 48), torch.randn(8, 32))
    loss.backward()
    assert a.logit_scale.grad is not None
    assert a.vision_projection.weight.grad.abs().sum() > 0 and a.text_projection.weight.grad.abs().sum() > 0


def test_embeddings_of_another_size_are_refused():
    a = make()
    with pytest.raises(ConfigError, match=r"vision embeddings of size 48, got shape \(2, 64\)"):
        a(torch.randn(2, 64), torch.randn(2, 32))
    with pytest.raises(ConfigError, match="text embeddings of size 32"):
        a(torch.randn(2, 48), torch.randn(2, 16))
    with pytest.raises(ConfigError, match="not divisible"):
        Adaptor(8, 8, dim=100, heads=12)


def test_downstream_head():
    head = adaptor_head(3)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout, nn.Linear]
    assert head[1].bias is None and (head[1].in_features, head[1].out_features) == (768, 512)
    assert head[0].p == 0.1 and head[5].out_features == 3
    assert head(torch.randn(4, 768)).shape == (4, 3)


def test_image_path_is_the_adaptors_encode_image_and_frozen_it_stays_in_eval_mode():
    from medtl.models.adaptor import AdaptorImagePath

    a = make().eval()
    path = AdaptorImagePath.from_spec(a.spec)
    loaded = path.load_adaptor(a.state_dict(), "adaptor.safetensors")
    assert set(loaded) == {n for n in a.state_dict() if n.startswith(("vision_projection.", "layers."))}
    x = torch.randn(5, 48)
    assert torch.allclose(path.eval()(x), a.encode_image(x), atol=1e-6)
    path.train()
    assert path.training and path.layers[0].dropout.training  # trainable: train mode as asked
    path.requires_grad_(False)
    path.train()
    assert not path.training and not path.layers[0].dropout.training  # frozen: features are fixed
    assert torch.equal(path(x), path(x))
    with pytest.raises(ConfigError, match="vision embeddings of size 48"):
        path(torch.randn(2, 64))
    other = Adaptor(48, 32, dim=24, heads=4)
    with pytest.raises(Exception, match="not this Adaptor's image path"):
        path.load_adaptor(other.state_dict(), "other.safetensors")


def test_a_classifier_on_adaptor_features():
    """TransferModel with module 'adaptor': pooled features -> the image path -> the Adaptor's head."""
    from medtl.models import build_model
    from medtl.models.adaptor import AdaptorImagePath

    model = build_model("resnet10t", 3, in_chans=1, module="adaptor").eval()
    assert isinstance(model.module, AdaptorImagePath) and model.module.vision_dim == 512
    assert [type(m) for m in model.head][1:3] == [nn.Linear, nn.BatchNorm1d] and model.num_outputs == 3
    assert model.spec["adaptor"]["dim"] == 768 and set(model.groups()) >= {"module", "head"}
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = model.module(model.backbone.forward_pooled(x))
        assert torch.allclose(model.forward_head_input(x), expected)
    # the BN policy concerns the backbone (and module), not the head's own BatchNorm
    assert model.head[2] not in model.norm_layers() and len(model.norm_layers()) > 0
    with pytest.raises(ConfigError, match="pooled features of the whole encoder"):
        build_model("resnet10t", 3, module="adaptor", truncate=2)
