"""LARS (timm's, with medtl's exclusions) and the per-phase learning-rate schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from medtl.engine.optim import PhaseSchedule, build_optimizer
from medtl.errors import UnknownChoiceError


def test_lars_scales_step_by_trust_ratio():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))  # ||w|| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = build_optimizer("lars", [{"params": [w, b]}], lr=0.1, momentum=0.0)
    assert type(opt).__module__.startswith("timm.")
    w.grad = torch.tensor([[0.0, 2.0]])  # ||g|| = 2 -> trust = 0.001 * 5 / 2 = 0.0025
    b.grad = torch.tensor([0.5])  # 1-d: plain SGD
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([[3.0, 4.0 - 0.1 * 0.0025 * 2.0]]))
    assert torch.allclose(b.detach(), torch.tensor([1.0 - 0.1 * 0.5]))


def test_lars_excludes_biases_and_norms_from_decay_and_adaptation():
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0]]))
    b = torch.nn.Parameter(torch.tensor([2.0]))
    opt = build_optimizer("lars", [{"params": [w, b], "lr": 0.1}], lr=0.1, momentum=0.0, weight_decay=0.5)
    flags = [(len(g["params"]), g["weight_decay"], g["always_adapt"]) for g in opt.param_groups]
    assert flags == [(1, 0.5, True), (1, 0.0, False)]
    w.grad, b.grad = torch.tensor([[0.0, 2.0]]), torch.tensor([1.0])
    opt.step()
    # timm's trust ratio: 0.001 ||w|| / (||g|| + wd ||w||) = 0.005 / 4.5, on g + wd w
    trust = 0.001 * 5 / (2 + 0.5 * 5)
    expected = torch.tensor([[3.0, 4.0]]) - 0.1 * trust * (
        torch.tensor([[0.0, 2.0]]) + 0.5 * torch.tensor([[3.0, 4.0]])
    )
    assert torch.allclose(w.detach(), expected)
    assert b.item() == pytest.approx(2.0 - 0.1 * 1.0)  # no decay, no adaptation


def test_lars_momentum_and_weight_decay_reduce_loss():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = build_optimizer("lars", [{"params": model.parameters()}], lr=1.0, weight_decay=1e-4)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    first = None
    for _ in range(50):
        loss = torch.nn.functional.mse_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "lars"])
def test_build_optimizer_uses_group_lr(name):
    p = torch.nn.Parameter(torch.zeros(2, 2))
    opt = build_optimizer(name, [{"params": [p], "lr": 0.5}], lr=0.1)
    assert opt.param_groups[0]["lr"] == 0.5


def test_unknown_optimizer():
    with pytest.raises(UnknownChoiceError, match="unknown optimizer 'adamm', did you mean 'adam'"):
        build_optimizer("adamm", [{"params": [torch.nn.Parameter(torch.zeros(1))]}], lr=0.1)


def lrs(kind, epochs=4, steps=5, **kwargs):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p], "lr": 1.0}, {"params": [], "lr": 0.1}], lr=1.0)
    sched = PhaseSchedule(opt, kind, steps_per_epoch=steps, epochs=epochs, **kwargs)
    out = []
    for _ in range(epochs):
        for _ in range(steps):
            out.append(opt.param_groups[0]["lr"])
            assert opt.param_groups[1]["lr"] == pytest.approx(0.1 * out[-1])  # groups keep their scale
            sched.after_step()
        sched.after_epoch(kwargs.get("metric", 0.5))
    return out, opt


def test_warmup_then_cosine():
    values, _ = lrs("cosine", warmup_epochs=1)
    assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert values[5] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 14 / 15)))
    assert all(a >= b for a, b in itertools.pairwise(values[5:]))


def test_warmup_then_linear_decay_to_zero():
    values, _ = lrs("linear", warmup_epochs=1)
    assert values[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert values[5:] == pytest.approx([1 - i / 15 for i in range(15)])


def test_exponential_per_epoch():
    values, _ = lrs("exponential", gamma=0.5)
    assert values[::5] == pytest.approx([1.0, 0.5, 0.25, 0.125])


def test_plateau_reduces_after_patience():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = PhaseSchedule(
        opt, "plateau", steps_per_epoch=1, epochs=10, plateau_patience=1, plateau_factor=0.1
    )
    for value in (0.5, 0.6, 0.6, 0.6):  # improves, then stalls: 2 bad epochs > patience 1
        sched.after_epoch(value)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_schedule_state_round_trip():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    a = PhaseSchedule(opt, "cosine", steps_per_epoch=3, epochs=3, warmup_epochs=1)
    for _ in range(4):
        a.after_step()
    state = a.state_dict()
    opt2 = torch.optim.SGD([p], lr=1.0)
    b = PhaseSchedule(opt2, "cosine", steps_per_epoch=3, epochs=3, warmup_epochs=1)
    b.load_state_dict(state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
