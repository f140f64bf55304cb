"""The digest pipeline gives exactly tensor_hash and tensor_stats, whichever thread ran them."""

from __future__ import annotations

import math

import pytest
import torch

from initaudit.tensors import DIGEST_AHEAD_FROM, DigestPipeline, tensor_hash, tensor_stats


def test_pipeline_digests_equal_inline_digests() -> None:
    torch.manual_seed(0)
    tensors = {
        "big": torch.randn(1024, 1024),  # 4 MiB: digested on the workers
        "small": torch.randn(8, 8),  # inline
        "half": torch.randn(700, 800).half(),
        "ints": torch.randint(0, 5, (600, 600)),
        "empty": torch.empty(0),
    }
    assert tensors["big"].numel() * 4 >= DIGEST_AHEAD_FROM
    done: list[int] = []
    pipeline = DigestPipeline(max_bytes=1, on_done=lambda n, _: done.append(n))
    for name, t in tensors.items():
        pipeline.put(name, t)
    got = pipeline.close()
    assert got == {k: (tensor_hash(t), tensor_stats(t)) for k, t in tensors.items()}
    assert sorted(done) == list(range(1, len(tensors) + 1))


def test_a_worker_error_reaches_the_caller() -> None:
    pipeline = DigestPipeline()
    pipeline.put("meta", torch.empty(1024, 1024, device="meta"))  # no bytes to hash
    with pytest.raises(Exception):  # noqa: B017 - whatever torch raises, not swallowed
        pipeline.close()


def _exact_std_mean(t: torch.Tensor) -> tuple[float, float]:
    """Population std and mean with exactly rounded sums (math.fsum), the reference."""
    xs = t.double().reshape(-1).tolist()
    mean = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / len(xs)), mean


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(300_000),  # several chunks
        lambda: torch.randn(1000),  # one chunk
        lambda: torch.randn(300_000) * 1e-3 + 1000.0,  # offset far larger than the spread
        lambda: torch.randn(300_000, dtype=torch.float64),
        lambda: torch.randint(-50, 50, (300_000,)),
        lambda: torch.randn(300_000).half(),
    ],
)
def test_stats_mean_and_std_are_double_precision(make) -> None:
    torch.manual_seed(0)
    t = make()
    std, mean = _exact_std_mean(t)
    stats = tensor_stats(t)
    assert stats["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-12)
    assert stats["std"] == pytest.approx(std, rel=1e-9)


def test_stats_of_a_constant_tensor_have_zero_spread() -> None:
    for value in (1.0, 0.1, -3.7e-8):
        stats = tensor_stats(torch.full((200_000,), value))
        assert stats["std"] == 0.0
        assert stats["mean"] == stats["min"] == stats["max"] == torch.tensor(value).item()


def test_a_tensor_is_let_go_before_it_counts_as_digested() -> None:
    """The replay's storage pool reuses memory as soon as ``put`` lets it go on: by then no
    worker may still hold the tensor (else the pool allocates afresh: a third 1 GB buffer)."""
    storages = [torch.randn(1024, 1024).untyped_storage() for _ in range(3)]
    uses: list[int] = []

    def done(n: int, _bytes: int) -> None:  # one at a time (max_bytes=1): in put order
        uses.append(torch._C._storage_Use_Count(storages[n - 1]._cdata))

    pipeline = DigestPipeline(max_bytes=1, on_done=done)
    for k, st in enumerate(storages):
        pipeline.put(str(k), torch.empty(0).set_(st, 0, (1024, 1024), (1024, 1)))
    pipeline.close()
    assert uses == [1, 1, 1]  # only `storages` itself: no worker's reference left
