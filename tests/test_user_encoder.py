"""The user encoder's causal mask and jagged handling."""

import pytest
import torch

from industrial.modules.user_encoder import UserEncoder, UserEncoderConfig, jagged_to_padded


def _encoder(causal: bool) -> UserEncoder:
    torch.manual_seed(0)
    return UserEncoder(UserEncoderConfig(dim=8, layers=2, heads=2, inner_dim=16, dropout=0.0, max_len=6, causal=causal)).eval()


def test_causal_states_ignore_the_future():
    encoder = _encoder(causal=True)
    vectors = torch.randn(4, 8)
    full = encoder(vectors, torch.tensor([4]))
    changed = vectors.clone()
    changed[3] += torch.randn(8)
    again = encoder(changed, torch.tensor([4]))
    assert torch.allclose(full[:3], again[:3], atol=1e-6)
    assert not torch.allclose(full[3], again[3])


def test_bidirectional_states_see_the_future():
    encoder = _encoder(causal=False)
    vectors = torch.randn(4, 8)
    changed = vectors.clone()
    changed[3] += torch.randn(8)
    assert not torch.allclose(encoder(vectors, torch.tensor([4]))[0], encoder(changed, torch.tensor([4]))[0])


def test_batched_equals_one_by_one():
    encoder = _encoder(causal=True)
    a, b = torch.randn(3, 8), torch.randn(5, 8)
    batched = encoder(torch.cat([a, b]), torch.tensor([3, 5]))
    assert torch.allclose(batched[:3], encoder(a, torch.tensor([3])), atol=1e-5)
    assert torch.allclose(batched[3:], encoder(b, torch.tensor([5])), atol=1e-5)
    last = UserEncoder.last(batched, torch.tensor([3, 5]))
    assert torch.equal(last[1], batched[-1])


def test_jagged_to_padded():
    values = torch.arange(5.0)[:, None]
    padded = jagged_to_padded(values, torch.tensor([2, 3]))
    assert padded.squeeze(-1).tolist() == [[0, 1, 0], [2, 3, 4]]


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_jagged_path_equals_the_padded_reference_and_each_sequence_alone(causal, norm_first):
    """The fast path (token-wise layers on real tokens, padded attention only) and the
    nn.TransformerEncoder reference give the same states and the same gradients, which are those
    of every sequence run alone (no padding at all)."""
    torch.manual_seed(0)
    encoder = UserEncoder(UserEncoderConfig(dim=32, layers=2, heads=4, inner_dim=64, dropout=0.0, max_len=30, causal=causal, norm_first=norm_first))
    lengths = torch.tensor([1, 30, 4, 2, 17, 3])
    x = torch.randn(int(lengths.sum()), 32, requires_grad=True)
    weights = torch.randn(int(lengths.sum()), 32)  # a loss whose gradient reaches every parameter
    params = [x, *encoder.parameters()]

    def run(jagged: bool, per_sequence: bool = False):
        encoder.config.jagged = jagged
        if per_sequence:
            chunks = torch.split(x, lengths.tolist())
            states = torch.cat([encoder(c, torch.tensor([len(c)])) for c in chunks])
        else:
            states = encoder(x, lengths)
        return states, torch.autograd.grad((states * weights).sum(), params)

    fast, reference, alone = run(True), run(False), run(True, per_sequence=True)
    for other in (reference, alone):
        torch.testing.assert_close(fast[0], other[0], rtol=1e-5, atol=1e-5)
        for a, b in zip(fast[1], other[1]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


@pytest.mark.parametrize("jagged", [True, False])
def test_a_host_max_length_gives_the_same_states_and_is_checked_on_the_cpu(jagged):
    """``max_length`` (the batch's longest history, known on the host) spares the GPU sync; the
    states are the same. A width wider than the longest row pads more, nothing else; on the CPU a
    length above it is refused."""
    torch.manual_seed(0)
    encoder = UserEncoder(UserEncoderConfig(dim=16, layers=2, heads=2, inner_dim=32, dropout=0.0, max_len=10, jagged=jagged)).eval()
    lengths = torch.tensor([3, 1, 5])
    x = torch.randn(9, 16)
    expected = encoder(x, lengths)
    torch.testing.assert_close(encoder(x, lengths, None, 5), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(encoder(x, lengths, None, 8), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="max_length=4"):
        encoder(x, lengths, None, 4)
    with pytest.raises(ValueError, match="user.max_len=10"):
        encoder(x, lengths, None, 11)
    with pytest.raises(ValueError, match="at least one history item"):
        encoder(x, torch.tensor([4, 0, 5]), None, 5)


@pytest.mark.parametrize("jagged", [True, False])
def test_bf16_autocast_step(jagged):
    """``train.amp: bf16``: under autocast the projections come out in bf16 and the jagged path
    pads them in their own dtype (it padded into a float32 buffer and failed before)."""
    torch.manual_seed(0)
    encoder = UserEncoder(UserEncoderConfig(dim=16, layers=2, heads=2, inner_dim=32, dropout=0.1, max_len=6, jagged=jagged)).train()
    x = torch.randn(7, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = encoder(x, torch.tensor([3, 4]), None, 4)
    states.float().sum().backward()
    assert torch.isfinite(x.grad).all() and all(p.grad is not None for p in encoder.blocks.parameters())
