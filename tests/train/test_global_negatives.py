"""Global-negative loss: 2 gloo processes under DDP, each with the cached (chunked, checkpointed) step, give the
gradient of 1 process's plain step on the whole batch, for the one-directional and the symmetric loss."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from hybridfast.encoder import EncoderConfig, FusedEncoder
from hybridfast.kernels import contrastive_loss
from hybridfast.train.loss import global_contrastive_loss
from hybridfast.train.step import ContrastiveDualEncoder

WORLD = 2
B = 4  # queries per rank
QUERIES = [f"question {i}: where does the river Rhine flow?" if i % 2 else f"Wo ist der Rhein {i}?" for i in range(8)]
PASSAGES = [f"passage {i}: the Rhine flows through Germany" for i in range(8)]
NEGATIVES = [f"negative {i}: Sông Rhine ở đâu?" for i in range(8)]
GROUPS = [0, 0, 1, 2, 3, 3, 4, 1]  # duplicates on one rank (0, 0) and across ranks (1 ... 1)


def _model(model_dir: str, embed_chunk_size: int = 0) -> ContrastiveDualEncoder:
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
    encoder = FusedEncoder(model, AutoTokenizer.from_pretrained(model_dir), EncoderConfig.load(model_dir))
    module = ContrastiveDualEncoder(encoder, temperature=0.07, learn_temperature=True, embed_chunk_size=embed_chunk_size)
    # float64 so that the only difference between the runs is the order of sums; no dropout, so both runs
    # see the same function.
    return module.double().eval()


def _inputs(encoder: FusedEncoder, index: list[int]) -> tuple:
    q = encoder.token_ids([QUERIES[i] for i in index], "query")
    p = encoder.token_ids([PASSAGES[i] for i in index] + [NEGATIVES[i] for i in index], "passage")
    groups = torch.tensor([GROUPS[i] for i in index])
    return q, p, groups, torch.cat([groups, torch.full((len(index),), -1)])


def _worker(rank: int, model_dir: str, store: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
                                         timeout=datetime.timedelta(seconds=120))
    module = _model(model_dir, embed_chunk_size=3)  # chunks of 3, 1 queries and 3, 3, 2 candidates
    ddp = torch.nn.parallel.DistributedDataParallel(module)
    q, p, q_groups, c_groups = _inputs(module.encoder, list(range(rank * B, (rank + 1) * B)))
    queries, candidates, tau = ddp(q, p)
    loss = sum(
        global_contrastive_loss(queries, candidates, temperature=tau, query_groups=q_groups,
                                candidate_groups=c_groups, symmetric=symmetric, backend="torch")
        for symmetric in (False, True)
    )
    loss.backward()
    if rank == 0:
        torch.save({name: param.grad for name, param in module.named_parameters()}, out)
    torch.distributed.barrier()
    # Exit without tearing gloo down: destroying the last reference to a ProcessGroupGloo joins its run-loop
    # threads while holding the GIL, and a run-loop thread that is still releasing a finished work item waits for
    # the GIL: a deadlock (seen in CI and reproduced here with torch 2.13, once in a few runs).
    os._exit(0)


@pytest.mark.multiprocess
@pytest.mark.timeout(300)
def test_two_process_gradient_equals_single_process(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "grads.pt"
    mp.spawn(_worker, args=(str(tiny_model_dir), str(tmp_path / "store"), str(out)), nprocs=WORLD, join=True)
    distributed = torch.load(out, weights_only=True)

    module = _model(str(tiny_model_dir))
    # The gathered candidate layout: [positives_r0, negatives_r0, positives_r1, negatives_r1].
    rank_q, rank_p, rank_qg, rank_cg = zip(
        *(_inputs(module.encoder, list(range(r * B, (r + 1) * B))) for r in range(WORLD)), strict=True
    )
    queries = torch.cat([module.embed_rows(rows) for rows in rank_q])
    candidates = torch.cat([module.embed_rows(rows) for rows in rank_p])
    labels = torch.cat([torch.arange(B) + r * 2 * B for r in range(WORLD)])
    loss = sum(
        contrastive_loss(queries, candidates, labels=labels, temperature=module.log_temperature.exp(),
                         group_ids=(torch.cat(rank_qg), torch.cat(rank_cg)), symmetric=symmetric, backend="naive")
        for symmetric in (False, True)
    )
    loss.backward()
    compared = 0
    for name, param in module.named_parameters():
        if param.grad is None:
            assert distributed[name] is None, name
            continue
        # float64: sums run in another order, nothing else differs
        atol = 1e-9 * float(param.grad.abs().max()) + 1e-12
        torch.testing.assert_close(distributed[name], param.grad, rtol=1e-7, atol=atol)
        compared += int(param.grad.abs().sum() > 0)
    assert compared > 10 and distributed["log_temperature"].abs() > 0


def test_single_process_is_the_plain_loss() -> None:
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(12, 16), dim=-1)
    groups = torch.tensor([0, 1, 1, 2, 3, 4])
    c_groups = torch.cat([groups, torch.full((6,), -1)])
    expected = contrastive_loss(q, c, temperature=0.05, group_ids=(groups, c_groups), backend="naive")
    got = global_contrastive_loss(q, c, temperature=0.05, query_groups=groups, candidate_groups=c_groups)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="both"):
        global_contrastive_loss(q, c, temperature=0.05, query_groups=groups)

