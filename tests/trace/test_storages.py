"""The replay's storage pool reuses a freed storage only once nothing else reads it."""

from __future__ import annotations

import torch

from initaudit.trace.storages import POOL_FROM, StoragePool

MB = 1 << 20
assert POOL_FROM <= MB


def _view(st: torch.UntypedStorage) -> torch.Tensor:
    return torch.empty(0).set_(st, 0, (st.nbytes() // 4,), (1,))


def test_a_given_back_storage_is_reused_for_the_same_size() -> None:
    pool = StoragePool(8 * MB)
    st = pool.take(MB)
    pool.give(st)
    assert pool.take(MB) is st
    assert pool.take(2 * MB) is not st  # another size: a fresh one
    assert (pool.reused, pool.fresh) == (1, 2)


def test_a_storage_a_reader_still_views_is_not_handed_out() -> None:
    pool = StoragePool(8 * MB)
    st = pool.take(MB)
    reader = _view(st)  # e.g. a digest worker's view
    reader.fill_(1.0)
    pool.give(st)
    other = pool.take(MB)
    assert other is not st
    _view(other).fill_(2.0)
    assert bool((reader == 1.0).all())  # the reader's values were not overwritten
    del reader
    assert pool.take(MB) is st  # now nothing reads it


def test_the_pool_keeps_no_more_than_its_bound() -> None:
    pool = StoragePool(10 * MB)
    a, b = pool.take(6 * MB), pool.take(6 * MB)
    pool.give(a)  # with b still out, keeping a would exceed the bound: a goes back
    pool.give(b)
    assert pool.take(6 * MB) is b
    c = pool.take(6 * MB)
    assert c is not a and c is not b
    assert (pool.reused, pool.fresh) == (1, 3)


def test_small_storages_are_not_kept() -> None:
    pool = StoragePool(8 * MB)
    st = pool.take(POOL_FROM - 1)
    pool.give(st)
    assert pool.take(POOL_FROM - 1) is not st
