"""The user encoder's causal mask and jagged handling."""

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
