"""Memristive layers (mpimpy.nn): exactness, gradients, conversion, state, training, errors."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpimpy import SNR, DPETensor, SlicedData
from mpimpy import nn as mnn
from mpimpy.datasets import load_digits

XBLK = (1, 1, 2, 4)
MBLK = (1, 1, 2, 4)


def ideal_engine(**kwargs):
    settings = dict(var=0.0, vnoise=0.0, read_noise=0.0, rdac=None, radc=None, g_level=16,
                    seed=0)
    settings.update(kwargs)
    return DPETensor(**settings)


def noisy_engine(**kwargs):
    settings = dict(var=0.1, vnoise=0.0, g_level=16, radc=2**8, adc_range="calibrated",
                    stuck_fault_ratio=0.01, seed=3)
    settings.update(kwargs)
    return DPETensor(**settings)


def quantized_product(engine, x2d, w_kn, xblk=XBLK, mblk=MBLK, paral=(64, 64), bw_e=None,
                      x_gran=None, w_gran=None):
    """Exact product of the quantized operands, from SlicedData.quantized_data (float64)."""
    xs = SlicedData(xblk, bw_e=bw_e, paral_size=paral,
                    quant_gran=(paral[0], 1) if x_gran is None else x_gran)
    xs.slice_data_imp(engine, x2d, transpose=True)
    ws = SlicedData(mblk, bw_e=bw_e, paral_size=paral, quant_gran=w_gran, is_weight=True)
    ws.slice_data_imp(engine, w_kn)
    return xs.quantized_data @ ws.quantized_data


def manual_int_quantize(values, bits, block):
    """Independent INT quantization of a 2-D float64 matrix in (rows, cols) blocks."""
    q_max = 2 ** (bits - 1) - 1
    out = torch.empty_like(values)
    for r in range(0, values.shape[0], block[0]):
        for c in range(0, values.shape[1], block[1]):
            blk = values[r:r + block[0], c:c + block[1]]
            step = blk.abs().max() / q_max
            step = step if step > 0 else torch.tensor(1.0, dtype=values.dtype)
            out[r:r + block[0], c:c + block[1]] = torch.round(blk / step).clamp(-q_max,
                                                                                 q_max) * step
    return out


# ---------------------------------------------------------------------------------------------
# Exactness in the noise-free, ideal case


def test_linear_equals_independently_quantized_product():
    torch.manual_seed(0)
    engine = ideal_engine()
    linear = nn.Linear(100, 20).double()
    layer = mnn.MemLinear.from_linear(linear, engine)
    x = torch.randn(7, 100, dtype=torch.float64)
    y = layer(x)
    # inputs: one scale per vector and 64-element row-block; weights: one per 64x64 tile
    xq = manual_int_quantize(x, 8, (1, 64))
    wq = manual_int_quantize(linear.weight.detach().t(), 8, (64, 64))
    ref = xq @ wq + linear.bias.detach()
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    assert y.dtype == torch.float64 and y.shape == (7, 20)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)])
def test_linear_shapes_and_dtypes(dtype, shape):
    torch.manual_seed(1)
    engine = ideal_engine()
    k = 70
    linear = nn.Linear(k, 9, dtype=dtype)
    layer = mnn.MemLinear.from_linear(linear, engine, paral_size=(32, 16))
    x = torch.randn(*shape[:-1], k, dtype=dtype) if len(shape) > 1 else torch.randn(
        k, dtype=dtype)
    y = layer(x)
    assert y.shape == linear(x).shape and y.dtype == dtype
    ref = quantized_product(engine, x.reshape(-1, k), linear.weight.detach().t(),
                            paral=(32, 16)) + linear.bias.detach().double()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(y.double().reshape(-1, 9), ref, rtol=tol, atol=tol)


CONV_CASES = [
    dict(in_channels=3, out_channels=5, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=2, padding=1, bias=False),
    dict(in_channels=4, out_channels=6, kernel_size=3, dilation=2, padding=(2, 1), groups=2),
    dict(in_channels=6, out_channels=6, kernel_size=3, padding="same", groups=6),
    dict(in_channels=2, out_channels=3, kernel_size=(2, 3), padding="same", dilation=(1, 2)),
    dict(in_channels=3, out_channels=4, kernel_size=2, padding="valid", stride=(1, 3)),
]


def conv_reference(engine, conv, x, paral=(64, 64), bw_e=None):
    """Unfold, quantize each group's operands with SlicedData, multiply exactly, fold back."""
    if isinstance(conv.padding, str):
        x = F.pad(x, conv._reversed_padding_repeated_twice)
        padding = 0
    else:
        padding = conv.padding
    cols = F.unfold(x.double(), conv.kernel_size, dilation=conv.dilation, padding=padding,
                    stride=conv.stride)
    b, _, length = cols.shape
    g = conv.groups
    k = cols.shape[1] // g
    w = conv.weight.detach().double().reshape(g, conv.out_channels // g, k)
    outs = []
    for i in range(g):
        xg = cols[:, i * k:(i + 1) * k].transpose(1, 2).reshape(b * length, k)
        outs.append(quantized_product(engine, xg, w[i].t(), paral=paral, bw_e=bw_e)
                    .view(b, length, -1))
    y = torch.cat(outs, dim=2).transpose(1, 2)
    ref_shape = F.conv2d(x.double(), conv.weight.detach().double(), None, conv.stride, padding,
                         conv.dilation, g).shape
    y = y.reshape(ref_shape)
    if conv.bias is not None:
        y = y + conv.bias.detach().double().view(1, -1, 1, 1)
    return y


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_equals_quantized_product(case):
    torch.manual_seed(2)
    engine = ideal_engine()
    conv = nn.Conv2d(**case)
    layer = mnn.MemConv2d.from_conv(conv, engine, paral_size=(16, 8))
    x = torch.randn(3, case["in_channels"], 9, 10)
    y = layer(x)
    assert y.shape == conv(x).shape and y.dtype == torch.float32
    ref = conv_reference(engine, conv, x, paral=(16, 8))
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    # close to the float layer (INT8)
    assert mnn.layer_snr(nn.Sequential(layer), x)["0"] > 25


def test_conv2d_float64_unbatched_and_block_fp():
    torch.manual_seed(3)
    engine = ideal_engine()
    conv = nn.Conv2d(2, 4, 3, padding=1).double()
    layer = mnn.MemConv2d.from_conv(conv, engine, bw_e=8, mblk=(1, 1, 2, 4, 4),
                                    xblk=(1, 1, 2, 4, 4))
    x = torch.randn(2, 6, 6, dtype=torch.float64)
    y = layer(x)
    assert y.shape == (4, 6, 6) and y.dtype == torch.float64
    cols = F.unfold(x.unsqueeze(0), 3, padding=1)[0].t()
    ref = quantized_product(engine, cols, conv.weight.detach().reshape(4, -1).t(),
                            xblk=(1, 1, 2, 4, 4), mblk=(1, 1, 2, 4, 4), bw_e=8)
    ref = ref.t().reshape(4, 6, 6) + conv.bias.detach().view(-1, 1, 1)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)


def test_results_do_not_depend_on_batch_or_chunking():
    torch.manual_seed(4)
    engine = noisy_engine(var=0.05, stuck_fault_ratio=0.0, adc_range="full")
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(6, 3, 8, 8)
    big = mnn.MemConv2d.from_conv(conv, engine, prog_seed=5).eval()
    small = mnn.MemConv2d.from_conv(conv, engine, prog_seed=5, chunk_elements=3 * 9 * 64).eval()
    y = big(x)
    torch.testing.assert_close(small(x), y, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(big(x[2:3]), y[2:3], rtol=1e-6, atol=1e-6)
    linear = mnn.MemLinear(30, 5, engine=engine, chunk_elements=60).eval()
    xl = torch.randn(11, 30)
    yl = linear(xl)
    linear.chunk_elements = 10**6
    torch.testing.assert_close(linear(xl), yl, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Gradients


def held_weights(layer):
    """The weights the arrays of the layer's last forward held, in the layer's torch layout."""
    held = torch.stack([layer.engine.effective_weights(mat) for mat in layer._mats])
    return held.transpose(1, 2).reshape(layer.weight.shape).to(layer.weight.dtype)


@pytest.mark.parametrize("backward_weights", ["ideal", "programmed"])
def test_linear_gradients_are_straight_through(backward_weights):
    torch.manual_seed(5)
    engine = noisy_engine(vnoise=0.05)  # hardware in the forward; the backward is digital
    linear = nn.Linear(40, 7)
    layer = mnn.MemLinear.from_linear(linear, engine, backward_weights=backward_weights).eval()
    x1 = torch.randn(2, 3, 40, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    grad = torch.randn(2, 3, 7)
    layer(x1).backward(grad)
    if backward_weights == "programmed":
        # the input gradient goes back through the weights the arrays held in the forward
        held = held_weights(layer)
        assert (held - linear.weight).abs().max() > 1e-3
        with torch.no_grad():
            linear.weight.copy_(held)
    linear(x2).backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, linear.weight.grad)
    torch.testing.assert_close(layer.bias.grad, linear.bias.grad)


def test_programmed_gradient_noise_free_is_the_quantized_models():
    torch.manual_seed(9)
    weight = torch.randn(5, 130, dtype=torch.float64)
    layer = mnn.MemLinear(130, 5, bias=False, engine=ideal_engine(), dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(weight)
    x = torch.randn(4, 130, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(4, 5, dtype=torch.float64)
    layer(x).backward(grad)
    quantized = manual_int_quantize(weight.t(), 8, (64, 64)).t()  # one block per array
    torch.testing.assert_close(x.grad, grad @ quantized, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.weight.grad, grad.t() @ x.detach())


@pytest.mark.parametrize("backward_weights", ["ideal", "programmed"])
@pytest.mark.parametrize("case", CONV_CASES[:4])
def test_conv2d_gradients_are_straight_through(case, backward_weights):
    torch.manual_seed(6)
    engine = noisy_engine()
    conv = nn.Conv2d(**case).double()
    layer = mnn.MemConv2d.from_conv(conv, engine, paral_size=(16, 8),
                                    backward_weights=backward_weights)
    x1 = torch.randn(2, case["in_channels"], 7, 8, dtype=torch.float64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    out = layer(x1)  # train mode: programmed anew for this forward
    if backward_weights == "programmed":
        with torch.no_grad():
            conv.weight.copy_(held_weights(layer))
    grad = torch.randn_like(out)
    out.backward(grad)
    conv(x2).backward(grad)
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, conv.weight.grad)
    if conv.bias is not None:
        torch.testing.assert_close(layer.bias.grad, conv.bias.grad)


# ---------------------------------------------------------------------------------------------
# Conversion


def small_model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 10))


def test_convert_and_back():
    torch.manual_seed(7)
    model = small_model()
    engine = ideal_engine()
    x = torch.rand(5, 1, 8, 8)
    converted = mnn.convert(model, engine, paral_size=(32, 32), seed=0)
    assert [type(m) for _, m in mnn.mem_layers(converted)] == [
        mnn.MemConv2d, mnn.MemConv2d, mnn.MemLinear, mnn.MemLinear]
    assert all(type(m) is not mnn.MemLinear for m in model.modules())  # a copy was converted
    for (_, a), (_, b) in zip(mnn.convertible_layers(model), mnn.mem_layers(converted),
                              strict=True):
        assert torch.equal(a.weight, b.weight) and a.weight.data_ptr() != b.weight.data_ptr()
        assert b.paral_size == (32, 32)
    y = converted(x)
    assert y.shape == (5, 10)
    snr = mnn.layer_snr(converted, x)
    assert list(snr) == ["0", "3", "6", "8"] and min(snr.values()) > 20
    back = mnn.to_digital(converted)
    assert not mnn.mem_layers(back)
    assert [type(m) for m in back] == [type(m) for m in model]
    torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


def test_convert_filter_first_last_and_inplace():
    model = small_model()
    engine = ideal_engine()
    kept = mnn.convert(model, engine, keep_first=True, keep_last=True)
    assert [type(m).__name__ for m in kept if isinstance(m, (nn.Linear, nn.Conv2d))] == [
        "Conv2d", "MemConv2d", "MemLinear", "Linear"]
    only_linear = mnn.convert(model, engine, layer_filter=lambda name, m: isinstance(
        m, nn.Linear))
    assert [name for name, _ in mnn.mem_layers(only_linear)] == ["6", "8"]
    same = mnn.convert(model, engine, inplace=True)
    assert same is model and len(mnn.mem_layers(model)) == 4
    # already converted layers are not converted again
    assert len(mnn.mem_layers(mnn.convert(model, engine))) == 4
    # a bare layer is converted itself
    assert isinstance(mnn.convert(nn.Linear(3, 2), engine), mnn.MemLinear)
    assert isinstance(mnn.to_digital(mnn.MemLinear(3, 2, engine=engine)), nn.Linear)


def test_convert_seed_gives_reproducible_programming():
    torch.manual_seed(8)
    model = small_model().eval()
    engine = noisy_engine()
    x = torch.rand(4, 1, 8, 8)
    a = mnn.convert(model, engine, seed=1)
    b = mnn.convert(model, engine, seed=1)
    c = mnn.convert(model, engine, seed=2)
    assert [int(m.prog_seed) for _, m in mnn.mem_layers(a)] == [
        int(m.prog_seed) for _, m in mnn.mem_layers(b)]
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


# ---------------------------------------------------------------------------------------------
# Programming, modes and state


def test_state_dict_round_trip_is_bit_identical():
    torch.manual_seed(9)
    model = small_model()
    x = torch.rand(6, 1, 8, 8)
    saved = mnn.convert(model, noisy_engine(), seed=11).eval()
    y = saved(x)
    buffer = io.BytesIO()
    torch.save(saved.state_dict(), buffer)
    assert all(k in saved.state_dict() for k in ("0.prog_seed", "8.prog_seed"))
    # a fresh model, other weights and seeds, another engine with the same settings
    torch.manual_seed(123)
    loaded = mnn.convert(small_model(), noisy_engine(seed=99), seed=12).eval()
    assert not torch.equal(loaded(x), y)
    buffer.seek(0)
    loaded.load_state_dict(torch.load(buffer))
    assert torch.equal(loaded(x), y)


def test_state_dict_with_read_noise_same_engine_state():
    torch.manual_seed(10)
    model = small_model()
    x = torch.rand(3, 1, 8, 8)
    a = mnn.convert(model, noisy_engine(vnoise=0.05, read_noise=0.02, seed=5), seed=1).eval()
    b = mnn.convert(small_model(), noisy_engine(vnoise=0.05, read_noise=0.02, seed=5),
                    seed=2).eval()
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))  # both engines at the same generator state
    assert not torch.equal(a(x), a(x))  # per-read noise differs from read to read


def test_digital_state_dict_loads_into_converted_model():
    model = small_model()
    converted = mnn.convert(small_model(), ideal_engine())
    converted.load_state_dict(model.state_dict())  # no prog_seed: the layers keep theirs
    for (_, a), (_, b) in zip(mnn.convertible_layers(model), mnn.mem_layers(converted),
                              strict=True):
        assert torch.equal(a.weight, b.weight)


def test_eval_holds_conductances_train_redraws():
    torch.manual_seed(11)
    engine = noisy_engine(var=0.2)
    layer = mnn.MemLinear(64, 8, engine=engine, prog_seed=4)
    x = torch.randn(10, 64)
    layer.eval()
    y1 = layer(x)
    mats = layer.programmed_operands
    assert torch.equal(layer(x), y1)
    assert layer.programmed_operands[0] is mats[0]  # not re-programmed
    state = engine.generator.get_state()
    layer.train()
    with torch.no_grad():
        t1, t2 = layer(x), layer(x)
    assert not torch.equal(t1, t2) and not torch.equal(t1, y1)
    assert torch.equal(engine.generator.get_state(), state)  # programming leaves it alone
    assert int(layer.prog_seed) == 4
    layer.eval()
    assert torch.equal(layer(x), y1)  # the eval conductances come back (same prog_seed)
    layer.program()
    assert int(layer.prog_seed) != 4 and not torch.equal(layer(x), y1)
    layer.program(4)
    assert torch.equal(layer(x), y1)


def test_weight_change_reprograms():
    torch.manual_seed(12)
    engine = ideal_engine()
    layer = mnn.MemLinear(20, 4, engine=engine).eval()
    x = torch.randn(3, 20)
    layer(x)
    with torch.no_grad():
        layer.weight.mul_(-2.0)  # in place: the version counter changes
    ref = quantized_product(engine, x, layer.weight.detach().t()) + layer.bias.detach().double()
    torch.testing.assert_close(layer(x).double(), ref, rtol=1e-5, atol=1e-5)
    layer.weight = nn.Parameter(torch.randn(4, 20))  # a new tensor
    ref = quantized_product(engine, x, layer.weight.detach().t()) + layer.bias.detach().double()
    torch.testing.assert_close(layer(x).double(), ref, rtol=1e-5, atol=1e-5)


def test_training_reduces_the_loss_on_digits():
    data = load_digits()
    x, y = data.x_train[:128], data.y_train[:128]
    torch.manual_seed(0)
    model = mnn.build_model("mlp", data.image_shape)
    converted = mnn.convert(model, noisy_engine(var=0.1, stuck_fault_ratio=0.0), seed=0)
    converted.eval()
    with torch.no_grad():
        before = float(F.cross_entropy(converted(x), y))
    history = mnn.train(converted, x, y, epochs=3, batch_size=32, lr=1e-2, seed=0)
    with torch.no_grad():
        after = float(F.cross_entropy(converted(x), y))
    assert history[-1] < history[0] and after < 0.7 * before
    assert not converted.training


def test_accuracy_over_programs_samples_chips_reproducibly():
    data = load_digits()
    torch.manual_seed(0)
    model = mnn.build_model("mlp", data.image_shape)
    mnn.train(model, data.x_train, data.y_train, epochs=3, lr=1e-2, seed=0)
    converted = mnn.convert(model, noisy_engine(var=0.3, stuck_fault_ratio=0.0), seed=0)
    x, y = data.x_test[:200], data.y_test[:200]
    first = mnn.accuracy_over_programs(converted, x, y, seeds=[0, 1, 2, 3])
    assert len(first) == 4 and len(set(first)) > 1  # each seed is another chip
    assert mnn.accuracy_over_programs(converted, x, y, seeds=[2]) == [first[2]]
    assert mnn.accuracy(converted, x, y) == first[2]  # left programmed with the last seed
    with pytest.raises(ValueError, match="at least one"):
        mnn.accuracy_over_programs(converted, x, y, seeds=[])
    with pytest.raises(ValueError, match="no memristive layers"):
        mnn.accuracy_over_programs(model, x, y)


# ---------------------------------------------------------------------------------------------
# Errors


def test_clear_errors():
    engine = ideal_engine()
    with pytest.raises(ValueError, match="padding_mode"):
        mnn.MemConv2d(2, 3, 3, padding_mode="reflect", engine=engine)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="circular"))
    with pytest.raises(ValueError, match=r"layer '0'.*padding_mode"):
        mnn.convert(model, engine)
    with pytest.raises(ValueError, match="g_level"):
        mnn.MemLinear(4, 2, engine=engine, mblk=(1, 5))
    with pytest.raises(ValueError, match="sign slice"):
        mnn.MemLinear(4, 2, engine=engine, xblk=(2, 2))
    with pytest.raises(ValueError, match="bw_e"):
        mnn.MemLinear(4, 2, engine=engine, bw_e=20)
    with pytest.raises(ValueError, match="quant_gran"):
        mnn.MemLinear(4, 2, engine=engine, quant_gran="per-block")
    with pytest.raises(TypeError, match="DPETensor"):
        mnn.MemLinear(4, 2, engine="cpu")
    with pytest.raises(TypeError, match="DPETensor"):
        mnn.convert(nn.Linear(2, 2), engine=None)
    with pytest.raises(ValueError, match="prog_seed"):
        mnn.MemLinear(4, 2, engine=engine, prog_seed=-1)
    with pytest.raises(ValueError, match="backward_weights must be one of"):
        mnn.MemLinear(4, 2, engine=engine, backward_weights="noisy")
    with pytest.raises(ValueError, match="not initialized"):
        mnn.MemLinear.from_linear(nn.LazyLinear(3), engine)
    with pytest.raises(ValueError, match="input channels"):
        mnn.MemConv2d(2, 3, 3, engine=engine)(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"\(\*, 4\)"):
        mnn.MemLinear(4, 2, engine=engine)(torch.randn(3, 5))
    with pytest.raises(ValueError, match="no memristive layers"):
        mnn.layer_snr(nn.Linear(2, 2), torch.randn(1, 2))
    with pytest.raises(ValueError, match="unknown model"):
        mnn.build_model("resnet")
    meta = mnn.MemLinear(4, 2, engine=engine, device="meta")
    with pytest.raises(ValueError, match="engine runs on cpu"):
        meta(torch.randn(1, 4, device="meta"))


def test_unsupported_layers_stay_digital():
    engine = ideal_engine()
    model = nn.Sequential(nn.Conv1d(2, 2, 3), nn.ConvTranspose2d(2, 2, 3), nn.Bilinear(2, 2, 2))
    converted = mnn.convert(model, engine)
    assert not mnn.mem_layers(converted)
    mha = nn.MultiheadAttention(8, 2)
    assert not mnn.mem_layers(mnn.convert(mha, engine))  # out_proj is used without forward()


def test_layer_snr_matches_a_manual_computation():
    torch.manual_seed(13)
    engine = noisy_engine(var=0.2, adc_range="full")  # a fixed range: batching changes nothing
    # float64, so that batches of 20 and of 50 give the same products to round-off (float32
    # matrix products round differently with the batch size)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    converted = mnn.convert(model, engine, seed=0).eval()
    x = torch.randn(50, 32, dtype=torch.float64)
    snr = mnn.layer_snr(converted, x, batch_size=20)
    with torch.no_grad():
        h = converted[0](x)
        expected0 = SNR(converted[0].digital_forward(x), h)
        expected2 = SNR(converted[2].digital_forward(h.relu()), converted[2](h.relu()))
    assert snr["0"] == pytest.approx(expected0, rel=1e-9)
    assert snr["2"] == pytest.approx(expected2, rel=1e-9)
    assert 0 < snr["0"] < 40


# ---------------------------------------------------------------------------------------------
# The inference notebook, tiny parameters, on a temporary MLflow store
