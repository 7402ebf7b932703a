"""Convolutions that skip zero inputs equal F.conv2d: forward, input and weight gradients,
through a whole training step; the dispatch runs them only where they pay. No timing here
(see scripts/bench_sparse_conv.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prime.kernels import native, sparse_conv
from prime.snn.models import get_model

pytestmark = pytest.mark.skipif(
    native.kernels() is None, reason="native kernels not built (no C compiler here)"
)


def spike_frames(shape, density, seed=0, channels_last=True):
    """Pooled-spike-like frames: zero, or k/4 for k in 1..4."""
    g = torch.Generator().manual_seed(seed)
    values = torch.randint(1, 5, shape, generator=g) / 4
    x = torch.where(torch.rand(shape, generator=g) < density, values, torch.zeros(()))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def conv_and_grads(conv, x, weight, padding, grad_out):
    x = x.detach().clone().requires_grad_()
    weight = weight.detach().clone().requires_grad_()
    out = conv(x, weight, padding=padding)
    out.backward(grad_out)
    return out, x.grad, weight.grad


@pytest.mark.parametrize(
    "shape, weight_shape, padding",
    [
        ((6, 12, 16, 16), (64, 12, 5, 5), 0),
        ((4, 3, 9, 13), (40, 3, 3, 3), 1),
        ((3, 5, 7, 6), (33, 5, 5, 3), 2),
        ((2, 2, 5, 7), (32, 2, 5, 5), 0),  # one output row
    ],
)
def test_sparse_conv_equals_dense_conv(shape, weight_shape, padding, monkeypatch):
    monkeypatch.setattr(sparse_conv, "MAX_DENSITY", 1.0)
    monkeypatch.setattr(sparse_conv, "MIN_FAN_OUT", 1)
    x = spike_frames(shape, 0.1)
    weight = torch.randn(weight_shape, generator=torch.Generator().manual_seed(1))
    dense_out = F.conv2d(x, weight, padding=padding)
    grad_out = torch.randn(dense_out.shape, generator=torch.Generator().manual_seed(2))

    out, grad_x, grad_w = conv_and_grads(sparse_conv.conv2d, x, weight, padding, grad_out)
    ref_out, ref_x, ref_w = conv_and_grads(F.conv2d, x, weight, padding, grad_out)
    assert out.grad_fn.name().startswith("_SparseConv2d")
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_x, ref_x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_w, ref_w, rtol=1e-5, atol=1e-4)


def test_all_zero_frames_give_zero_output_and_weight_gradient(monkeypatch):
    monkeypatch.setattr(sparse_conv, "MAX_DENSITY", 1.0)
    monkeypatch.setattr(sparse_conv, "MIN_FAN_OUT", 1)
    x = torch.zeros(3, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    weight, grad_out = torch.randn(32, 4, 3, 3, generator=g), torch.randn(3, 32, 6, 6, generator=g)
    out, grad_x, grad_w = conv_and_grads(sparse_conv.conv2d, x, weight, 0, grad_out)
    assert out.grad_fn.name().startswith("_SparseConv2d")
    assert not out.any() and not grad_w.any()
    ref_x = torch.nn.grad.conv2d_input(x.shape, weight, grad_out)
    torch.testing.assert_close(grad_x, ref_x, rtol=1e-5, atol=1e-5)


def test_weight_gradient_does_not_depend_on_the_thread_count():
    frames = sparse_conv.compress(spike_frames((37, 12, 10, 10), 0.1))
    grad = torch.randn(37, 64, 6, 6, generator=torch.Generator().manual_seed(0))
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            results.append(sparse_conv.sparse_conv2d_weight_grad(frames, grad, (64, 12, 5, 5), 0))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_compress_keeps_every_nonzero_in_frame_order():
    x = spike_frames((5, 3, 4, 6), 0.3, channels_last=False)
    frames = sparse_conv.compress(x)
    x_cl = x.permute(0, 2, 3, 1).reshape(5, -1)  # channels-last positions
    for n in range(5):
        span = slice(frames.offsets[n], frames.offsets[n + 1])
        index = frames.index[span].long()
        assert torch.equal(index, x_cl[n].nonzero().flatten())
        assert torch.equal(frames.value[span], x_cl[n, index])
    assert sparse_conv.compress(x, max_density=0.1) is None  # 30 % nonzero


@pytest.mark.parametrize(
    "case, x, weight, stride",
    [
        ("denser than MAX_DENSITY", spike_frames((4, 12, 16, 16), 0.5), (64, 12, 5, 5), 1),
        ("fan-out 12 x 5 x 5 < MIN_FAN_OUT", spike_frames((4, 2, 16, 16), 0.02), (12, 2, 5, 5), 1),
        ("stride 2", spike_frames((4, 12, 16, 16), 0.02), (64, 12, 5, 5), 2),
        ("float64", spike_frames((4, 12, 16, 16), 0.02).double(), (64, 12, 5, 5), 1),
    ],
)
def test_dense_where_sparse_does_not_pay(case, x, weight, stride):
    weight = torch.randn(weight, generator=torch.Generator().manual_seed(0)).to(x.dtype)
    weight.requires_grad_()
    out = sparse_conv.conv2d(x, weight, stride=stride)
    assert not out.grad_fn.name().startswith("_SparseConv2d"), case
    assert torch.equal(
        out, F.conv2d(x.contiguous(memory_format=torch.channels_last), weight, stride=stride)
    )


def test_kernel_larger_than_the_frame_gets_torchs_error(monkeypatch):
    monkeypatch.setattr(sparse_conv, "MAX_DENSITY", 1.0)
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        sparse_conv.conv2d(spike_frames((2, 2, 4, 4), 0.1), torch.randn(32, 2, 5, 5))


def test_training_step_with_sparse_and_dense_convolutions_agree(monkeypatch):
    """nmnist-conv's second convolution runs sparse on sparse input; the loss and every
    score gradient equal those of the dense convolution."""
    x = spike_frames((10, 8, 2, 34, 34), 0.05, channels_last=False)
    y = torch.arange(8) % 10

    def step(max_density):
        monkeypatch.setattr(sparse_conv, "MAX_DENSITY", max_density)
        model = get_model("nmnist-conv", chip_seed=3, score_seed=3)
        loss = F.cross_entropy(model(x, "multi").mean(0), y)
        loss.backward()
        return loss, [p.grad for p in model.parameters() if p.requires_grad]

    calls = []
    forward = sparse_conv.sparse_conv2d_forward
    monkeypatch.setattr(
        sparse_conv, "sparse_conv2d_forward", lambda *a: calls.append(1) or forward(*a)
    )
    loss, grads = step(1.0)
    assert calls, "the sparse path did not run"
    ref_loss, ref_grads = step(0.0)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for grad, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-6)
