"""The replay's storage pool reuses a freed storage only once nothing else reads it."""

from __future__ import annotations

import torch

from initaudit.trace.storages import StoragePool


def test_a_given_back_storage_is_reused_for_the_same_size() -> None:
    pool = StoragePool(1 << 20)
    st = pool.take(4096)
    pool.give(st)
    assert pool.take(4096) is st
    assert pool.take(8192) is not st  # another size: a fresh one
    assert (pool.reused, pool.fresh) == (1, 2)


def test_a_storage_a_reader_still_views_is_not_handed_out() -> None:
    pool = StoragePool(1 << 20)
    st = pool.take(4096)
    reader = torch.empty(0).set_(st, 0, (1024,), (1,))  # e.g. a digest worker's view
    reader.fill_(1.0)
    pool.give(st)
    other = pool.take(4096)
    assert other is not st
    other_view = torch.empty(0).set_(other, 0, (1024,), (1,))
    other_view.fill_(2.0)
    assert bool((reader == 1.0).all())  # the reader's values were not overwritten
    del reader
    assert pool.take(4096) is st  # now nothing reads it


def test_the_pool_keeps_no_more_than_its_bound() -> None:
    pool = StoragePool(10_000)
    a, b = pool.take(6000), pool.take(6000)
    pool.give(a)  # with b still out, keeping a would exceed the bound: a goes back
    pool.give(b)
    assert pool.take(6000) is b
    c = pool.take(6000)
    assert c is not a and c is not b
    assert (pool.reused, pool.fresh) == (1, 3)
