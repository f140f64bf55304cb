"""The digest pipeline gives exactly tensor_hash and tensor_stats, whichever thread ran them."""

from __future__ import annotations

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
