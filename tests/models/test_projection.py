"""Projection heads: the SimCLR MLP and the domain-boundaries study's bias-free sigmoid projector."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medtl.errors import UnknownChoiceError
from medtl.models.projection import build_projector


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module if isinstance(m, nn.Linear)]


def test_mlp_projector_is_two_layers_with_relu():
    head = build_projector("mlp", 512, hidden=256, out=128)
    assert [(m.in_features, m.out_features, m.bias is not None) for m in linears(head)] == [
        (512, 256, True),
        (256, 128, True),
    ]
    assert isinstance(head[1], nn.ReLU)
    assert head(torch.randn(3, 512)).shape == (3, 128)


def test_study_projector_shapes_activations_and_no_bias():
    head = build_projector("study", 2048, out=256)
    assert [(m.in_features, m.out_features, m.bias) for m in linears(head)] == [
        (2048, 2048, None),
        (2048, 2048, None),
        (2048, 256, None),
    ]
    assert [type(m) for m in head][1::2] == [nn.ReLU, nn.Sigmoid]


def test_unknown_projector():
    with pytest.raises(UnknownChoiceError, match="unknown projector 'mpl', did you mean 'mlp'"):
        build_projector("mpl", 8)


def test_simclr_network_groups_cover_every_parameter_once():
    from medtl.models import create_backbone
    from medtl.models.projection import SimCLRNetwork

    backbone = create_backbone("resnet10t", in_chans=1)
    net = SimCLRNetwork(backbone, build_projector("mlp", backbone.num_features, out=16), spec={})
    names = [n for names in net.groups().values() for n in names]
    assert sorted(names) == sorted(n for n, _ in net.named_parameters())
    assert list(net.groups())[-1] == "head" and next(iter(net.groups())) == "stem"
    x = torch.randn(2, 1, 32, 32)
    assert net(x).shape == (2, 16) and net.forward_head_input(x).shape == (2, backbone.num_features)
