"""Fixtures shared by the kernel tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import triton


@pytest.fixture
def forced_tuning(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[triton.Config]]:
    """``tune(kernel, configs, winner)``: make a ``triton.autotune`` kernel tune afresh over ``configs`` (on the
    interpreter, or compiled on CUDA). Each config is launched once on the live buffers (as the real benchmark's repeated calls are),
    in the given order, and ``winner(config)`` says which one is "fastest". Returns the list the benchmarked
    configs are appended to."""
    benchmarked: list[triton.Config] = []

    def tune(kernel, configs: list[triton.Config], winner: Callable[[triton.Config], bool]) -> list[triton.Config]:
        real_bench = kernel._bench

        def bench(*args, config, **meta):
            real_bench(*args, config=config, **meta)
            benchmarked.append(config)
            return [1.0 if winner(config) else 2.0] * 3

        monkeypatch.setattr(kernel, "configs", list(configs))
        monkeypatch.setattr(kernel, "cache", {})
        monkeypatch.setattr(kernel, "_bench", bench)
        # do_bench is a cached property that would look for a GPU: the instance entry shadows it.
        monkeypatch.setitem(kernel.__dict__, "do_bench", lambda call, quantiles: (call(), [0.0] * 3)[1])
        return benchmarked

    return tune
