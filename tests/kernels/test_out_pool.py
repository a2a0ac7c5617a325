"""The output cache (kernels/csrc/out_pool.cpp): large CPU outputs reuse freed blocks.

An output of at least 1 MiB comes from ``_C.pooled_empty`` through DLPack; when torch frees
it, its block waits in the cache for the next output of the same byte size (no new pages,
so no page faults). Outputs below 1 MiB, and blocks over 64 MiB, are torch's as before.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlsys.kernels import _C, conv2d, conv2d_relu_pool
from dlsys.kernels._plumbing import _empty
from dlsys.kernels.testing import assert_close


def test_a_freed_output_is_reused_by_the_next_of_its_size() -> None:
    # 128 * 16 * 28 * 28 * 4 B = 6,422,528 B: conv layer 1's output
    a = _empty((128, 16, 28, 28), torch.empty(0))
    ptr = a.data_ptr()
    assert a.shape == (128, 16, 28, 28) and a.dtype == torch.float32 and a.is_contiguous()
    del a
    before = _C.out_pool_stats()
    b = _empty((128, 16, 28, 28), torch.empty(0))
    after = _C.out_pool_stats()
    assert b.data_ptr() == ptr
    assert after["hits"] == before["hits"] + 1
    assert after["cached_bytes"] == before["cached_bytes"] - 6_422_528
    b.fill_(2.0)  # writable, the whole of it
    assert float(b.sum()) == 2.0 * b.numel()


def test_small_outputs_and_other_devices_are_torch_s() -> None:
    before = _C.out_pool_stats()
    small = _empty((1023, 256), torch.empty(0))  # 1023 * 256 * 4 B: 4 KiB under 1 MiB
    f64 = _empty((128, 1024), torch.empty(0, dtype=torch.float64))  # exactly 1 MiB: cached
    after = _C.out_pool_stats()
    assert small.shape == (1023, 256)
    assert f64.dtype == torch.float64 and f64.shape == (128, 1024)
    assert after["hits"] + after["misses"] == before["hits"] + before["misses"] + 1
    meta = _empty((1024, 1024), torch.empty(0, device="meta"))
    assert meta.device.type == "meta"


def test_an_unconsumed_capsule_gives_its_block_back() -> None:
    before = _C.out_pool_stats()
    cap = _C.pooled_empty([512, 1024], "float32")  # 2 MiB, never handed to torch
    del cap
    after = _C.out_pool_stats()
    assert after["cached_bytes"] == before["cached_bytes"] + 2 * 1024 * 1024
    assert after["cached_blocks"] == before["cached_blocks"] + 1
    t = torch.from_dlpack(_C.pooled_empty([512, 1024], "float32"))
    assert _C.out_pool_stats()["hits"] == after["hits"] + 1
    del t


def test_blocks_over_the_limit_are_freed_not_cached() -> None:
    big = _empty((17, 1024, 1024), torch.empty(0))  # 68 MiB > 64 MiB per block
    before = _C.out_pool_stats()
    del big
    assert _C.out_pool_stats()["cached_bytes"] == before["cached_bytes"]


@pytest.mark.parametrize(
    ("shape", "dtype", "match"),
    [
        ([-1, 1 << 20], "float32", "sizes must be >= 0"),
        ([1 << 20], "float16", "dtype must be 'float32' or 'float64'"),
        ([16], "float32", "below the cached size"),
        ([1 << 40, 1 << 20], "float32", "too many elements"),
    ],
)
def test_bad_requests_are_refused(shape: list[int], dtype: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _C.pooled_empty(shape, dtype)


def test_pooled_outputs_of_the_ops_match_torch_twice() -> None:
    """conv2d's 1 MiB output and grad input, and the fused block's, from the cache: the same
    values as torch on a second call that reuses the first call's blocks."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(4, 16, 64, 64, generator=gen, requires_grad=True)  # 1 MiB; gx too
    w = (torch.randn(16, 16, 3, 3, generator=gen) * 0.1).requires_grad_()
    b = torch.randn(16, generator=gen, requires_grad=True)
    for _ in range(2):
        y = conv2d(x, w, b, 1, 1)  # 4 * 16 * 64 * 64 * 4 B = 1 MiB
        y_ref = F.conv2d(x, w, b, 1, 1)
        assert_close(y, y_ref, name="y")
        gy = torch.randn(y.shape, generator=gen)
        for name, a, e in zip(
            ("gx", "gw", "gb"),
            torch.autograd.grad(y, (x, w, b), gy),
            torch.autograd.grad(y_ref, (x, w, b), gy),
            strict=True,
        ):
            assert_close(a, e, rtol=2e-4, atol=2e-3, name=name)
        z = conv2d_relu_pool(x, w, b, 1, 1, pool=1)  # pool 1: a 1 MiB pooled output
        z_ref = F.max_pool2d(F.relu(F.conv2d(x, w, b, 1, 1)), 1)
        assert_close(z, z_ref, name="z")
        del y, y_ref, z, z_ref


def test_opcheck_with_pooled_output() -> None:
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 4, 64, 64, generator=gen, requires_grad=True)
    w = torch.randn(32, 4, 3, 3, generator=gen, requires_grad=True)  # y: 2*32*64*64*4 = 1 MiB
    torch.library.opcheck(torch.ops.dlsys.conv2d.default, (x, w, None, [1, 1], [1, 1, 1, 1],
                                                          [1, 1], 1))  # fmt: skip


def test_a_cached_output_behaves_like_a_tensor_from_numpy() -> None:
    """Documented difference from torch's own outputs: its storage cannot grow in place."""
    y = _empty((512, 1024), torch.empty(0))  # 2 MiB
    with pytest.raises(RuntimeError, match="not resizable"):
        y.resize_(1024, 1024)
    y.resize_(256, 1024)  # shrinking works
    y.fill_(3.0)
    z = y.clone()
    y.share_memory_()
    assert y.is_shared() and torch.equal(y, z)


def test_release_frees_the_cached_blocks_and_keeps_outputs_in_use() -> None:
    from dlsys.kernels import output_cache_stats, release_output_cache

    kept = _empty((128, 16, 28, 28), torch.empty(0))  # in use: untouched by the release
    kept.fill_(3.0)
    freed = _empty((64, 16, 28, 28), torch.empty(0))  # 3,211,264 B, back in the cache
    del freed
    before = output_cache_stats()
    assert before["cached_bytes"] >= 3_211_264 and before["cached_blocks"] >= 1
    assert release_output_cache() == before["cached_bytes"]
    after = output_cache_stats()
    assert after["cached_bytes"] == 0 and after["cached_blocks"] == 0
    assert release_output_cache() == 0  # nothing left
    assert float(kept.sum()) == 3.0 * kept.numel()
    # the cache fills again: the next output of that size is a miss, then a hit
    again = _empty((64, 16, 28, 28), torch.empty(0))
    del again
    assert output_cache_stats()["cached_bytes"] == 3_211_264
