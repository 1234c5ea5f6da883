"""Generate REPORT.md and its plots from one research experiment's result files (no hand-typed numbers).

    python benchmarks/research/report.py --results benchmarks/research/results/cpu-reduced \\
        --out benchmarks/research/REPORT.md

Reads the files that `experiment.py` writes (see `layout.py`); steps that have not finished are listed as
missing and the report is marked incomplete. Plots go to `figures/{experiment name}/` beside the report.
The only numbers not measured here are the seed paper's published figures (`SEED_PAPER`), quoted with
their source for the comparison of effect directions.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures  # noqa: E402
from layout import ZERO_SHOT, ResultsLayout, mean_tree, read_json, read_steps, std_tree, strategy_name  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

# Published, not measured here: Elmahdy, Lin & Ahmad 2024 (arXiv 2408.10536), XLM-R fine-tuned on XQuAD,
# evaluated on XQuAD-R: macro mAP (their Table 1) and mean rank distance (their Table 2), as quoted in
# shared/docs/ANCHORS.md.
SEED_PAPER_SOURCE = "Elmahdy, Lin & Ahmad 2024 (arXiv 2408.10536), XLM-R rows, Tables 1–2, via shared/docs/ANCHORS.md"
SEED_PAPER = {
    ("mono", "map"): {"x-x-mono": 0.792, "x-y": 0.755, "hybrid": 0.798},
    ("cross", "map"): {"x-x-mono": 0.674, "x-y": 0.700, "hybrid": 0.705},
    ("multi", "map"): {"x-x-mono": 0.547, "x-y": 0.593, "hybrid": 0.593},
    ("multi", "rank_distance"): {"x-x-mono": 410.2, "x-y": 295.4, "hybrid": 286.6},
}
# multilingual-e5-small's published SciFact nDCG@10 (model card / MTEB), full corpus, 512 tokens.
E5_SMALL_SCIFACT_NDCG10 = 0.677

LAREQA_COLUMNS = [("mono", "map"), ("cross", "map"), ("multi", "map"), ("mono", "r@1"), ("cross", "r@1"),
                  ("multi", "r@1"), ("multi", "rank_distance")]
COST_METRICS = [("latency_p50_ms", "p50 latency (ms)"), ("latency_p99_ms", "p99 latency (ms)"),
                ("passages_per_s", "passages/s"), ("tokens_per_s", "real tokens/s")]
HIGHER_IS_BETTER_COST = {"passages_per_s", "tokens_per_s"}


@dataclass
class Results:
    """Everything found under one results folder."""

    layout: ResultsLayout
    experiment: dict[str, Any]
    steps: list[dict[str, Any]]
    train: dict[str, dict[str, Any]] = field(default_factory=dict)
    evals: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    compares: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    cost: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    @property
    def strategies(self) -> list[str]:
        """Strategy names, α from 1 (X-X-mono) down to 0 (X-Y)."""
        return [strategy_name(a) for a in sorted(self.experiment["alphas"], reverse=True)]

    def runs_of(self, strategy: str) -> list[str]:
        return [r["run"] for r in self.experiment["runs"] if r["strategy"] == strategy]

    def pooled(self, model: str, task: str) -> tuple[dict[str, Any], dict[str, Any], int] | None:
        """(mean over seeds, std over seeds, seeds) of a strategy's result; zero-shot has one run."""
        runs = [ZERO_SHOT] if model == ZERO_SHOT else self.runs_of(model)
        found = [self.evals[(run, task)] for run in runs if (run, task) in self.evals]
        if not found or len(found) < len(runs):
            return None
        return mean_tree(found), std_tree(found), len(found)


def load_results(root: Path) -> Results:
    layout = ResultsLayout(root)
    if not layout.experiment_file.is_file():
        raise SystemExit(f"report: {layout.experiment_file} not found: run benchmarks/research/experiment.py first")
    res = Results(layout, read_json(layout.experiment_file), read_steps(layout))
    exp = res.experiment
    for run in exp["runs"]:
        path = layout.train_file(run["run"])
        if path.is_file():
            res.train[run["run"]] = read_json(path)
        else:
            res.missing.append(f"training of {run['run']}")
    for model in [ZERO_SHOT, *(r["run"] for r in exp["runs"])]:
        for task in exp["tasks"]:
            path = layout.eval_file(model, task)
            if path.is_file():
                res.evals[(model, task)] = read_json(path)
            else:
                res.missing.append(f"evaluation of {model} on {task}")
    for pair in exp["comparisons"]:
        path = layout.compare_file(pair["task"], pair["a"], pair["b"])
        if path.is_file():
            res.compares[(pair["task"], pair["a"], pair["b"])] = read_json(path)
        else:
            res.missing.append(f"significance test {pair['task']}: {pair['b']} vs {pair['a']}")
    if layout.cost_file.is_file():
        res.cost = read_json(layout.cost_file)
    else:
        res.missing.append("inference cost measurement")
    return res


# ---- formatting -------------------------------------------------------------------------------------------
def num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def mean_std(mean: Any, std: Any, seeds: int, digits: int = 4) -> str:
    if seeds > 1 and isinstance(std, float):
        return f"{num(mean, digits)} ± {num(std, digits)}"
    return num(mean, digits)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def display(model: str, alphas: dict[str, float]) -> str:
    if model == ZERO_SHOT:
        return "zero-shot"
    alpha = alphas.get(model)
    names = {"x-x-mono": "X-X-mono", "x-y": "X-Y", "hybrid": "hybrid"}
    return f"{names[model]} (α={alpha:g})" if model in names else f"α={alpha:g}"


def rel(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


# ---- sections ---------------------------------------------------------------------------------------------
class Report:
    def __init__(self, res: Results, out: Path):
        self.res = res
        self.out = out
        self.exp = res.experiment
        self.alphas = {strategy_name(a): a for a in self.exp["alphas"]}
        self.models = [ZERO_SHOT, *res.strategies]
        self.figure_dir = out.parent / "figures" / self.exp["name"]
        self.seeds = len(self.exp["seeds"])

    def metric(self, model: str, task: str, setting: str, name: str) -> tuple[Any, Any, int]:
        pooled = self.res.pooled(model, task)
        if pooled is None:
            return None, None, 0
        mean, std, n = pooled
        return mean["metrics"].get(setting, {}).get(name), std["metrics"].get(setting, {}).get(name), n

    def compare_row(self, task: str, a: str, b: str, setting: str, metric: str) -> dict[str, Any] | None:
        comparison = self.res.compares.get((task, a, b))
        if comparison is None:
            return None
        return next((r for r in comparison["rows"] if r["setting"] == setting and r["metric"] == metric), None)

    def figure(self, name: str) -> Path:
        return self.figure_dir / name

    def link(self, path: Path, caption: str) -> str:
        return f"![{caption}]({rel(path, self.out.parent)})"

    # -- header ------------------------------------------------------------------------------------------
    def header(self) -> list[str]:
        exp = self.exp
        lines = [
            "# Research report: monolingual, cross-lingual and hybrid batches — quality, language bias, inference cost",
            "",
            f"> Generated by `python benchmarks/research/report.py --results {rel(self.res.layout.root, REPO_ROOT)} "
            f"--out {rel(self.out, REPO_ROOT)}` from the result files in `{rel(self.res.layout.root, REPO_ROOT)}/`. "
            "Do not edit by hand: every number below is read from those files, except the seed paper's published "
            "figures, which are quoted with their source.",
            "",
            f"**Run:** {exp['label']}",
            "",
        ]
        if exp.get("reduced"):
            lines += ["**This is a REDUCED run** (see *Setup* and *Limits*): few training steps, short max lengths, "
                      "frozen embeddings, subsampled evaluation sets. Its numbers test the pipeline and the direction of "
                      "the effects at small scale; they are not the full experiment (`benchmarks/research/gpu_full.toml`).",
                      ""]
        if self.res.missing:
            lines += ["**INCOMPLETE:** these steps had not finished when the report was generated: "
                      + "; ".join(self.res.missing) + ". Re-running the same `experiment.py` command resumes them.", ""]
        return lines

    # -- answer ------------------------------------------------------------------------------------------
    def answer(self) -> list[str]:
        lines = ["## Answer to the research question", "",
                 "*What is the impact of simultaneous monolingual and cross-lingual optimization on the inference "
                 "latency and throughput of multilingual retrieval models evaluated on BEIR?*", ""]
        cost = self.res.cost
        if cost is None:
            return lines + ["Not answered yet: the inference cost step has not run.", ""]
        models = [m for m in cost["models"]]
        infos = list(cost["models"].values())
        same_params = len({i["parameters"] for i in infos}) == 1
        same_tokens = len({i["passage_tokens"] for i in infos}) == 1 and len({i["query_tokens"] for i in infos}) == 1
        lean = spread(cost, "lean")
        base = spread(cost, "baseline")
        bullets = []
        within_noise = all(lean[m]["between"] is not None and lean[m]["within"] is not None
                           and lean[m]["between"] <= lean[m]["within"] for m, _ in COST_METRICS)
        headline = ("no measurable effect on inference cost" if within_noise
                    else "cost differences between models exceed one model's run-to-run range on some metrics")
        bullets.append(
            f"**Training strategy: {headline}.** The {len(models)} models measured "
            f"({', '.join(models)}) "
            + ("have the same architecture and parameter count "
               f"({num(infos[0]['parameters'])}) " if same_params else "differ in parameter count ")
            + ("and see exactly the same tokens " if same_tokens else "and see different token counts ")
            + f"({num(infos[0]['passage_tokens'])} real tokens for {cost['texts']['passages']} SciFact passages)"
            + (": the sampling strategy changes the weights' values, not the computation. " if same_params and same_tokens
               else ". ")
            + "Measured on "
            f"{cost['device']}, the largest relative difference between models' mean lean-path throughput is "
            f"{pct(lean['passages_per_s']['between'])} against a run-to-run spread of "
            f"{pct(lean['passages_per_s']['within'])} within one model (one-way ANOVA over repeats p = "
            f"{num(lean['passages_per_s']['anova_p'], 3)}); for p50 latency at batch 1: "
            f"{pct(lean['latency_p50_ms']['between'])} between models vs {pct(lean['latency_p50_ms']['within'])} "
            f"within (p = {num(lean['latency_p50_ms']['anova_p'], 3)}). "
            + verdict(lean)
        )
        speed = speedups(cost)
        if speed:
            if speed["throughput_min"] > 1.0 and speed["p50_max"] < 1.0:
                serving = "the lean path is faster on every model"
            elif speed["throughput_max"] < 1.0 and speed["p50_min"] > 1.0:
                serving = "the lean path is slower than the baseline on every model here"
            else:
                serving = "no consistent difference between the lean path and the baseline here"
            info = infos[0]
            padding = (1 - info["passage_tokens"] / info["baseline_padded_passage_tokens"]
                       if info.get("baseline_padded_passage_tokens") else None)
            bullets.append(
                f"**Serving path: {serving}.** The lean path vs the unfused baseline, same models, "
                f"same texts, same run: throughput × {num(speed['throughput_mean'], 2)} "
                f"(range over models {num(speed['throughput_min'], 2)}–{num(speed['throughput_max'], 2)}), p50 latency "
                f"× {num(speed['p50_mean'], 2)} of the baseline's (range {num(speed['p50_min'], 2)}–"
                f"{num(speed['p50_max'], 2)}). Baseline between-model throughput spread: "
                f"{pct(base['passages_per_s']['between'])} vs within {pct(base['passages_per_s']['within'])}."
                + (f" Padding was {pct(padding)} of the baseline's token slots on this sample, which bounds what "
                   f"length bucketing can save (lean backend here: {info['lean_backend']})." if padding is not None else "")
            )
        quality = self.quality_sentence()
        if quality:
            bullets.append(quality)
        bias = self.bias_sentence()
        if bias:
            bullets.append(bias)
        return lines + [f"- {b}" for b in bullets] + [""]

    def quality_sentence(self) -> str:
        parts, significant = [], []
        for a in ("x-x-mono", "x-y"):
            row = self.compare_row("beir", a, "hybrid", "test", "ndcg@10")
            if row is not None:
                parts.append(f"hybrid − {display(a, self.alphas)} = {row['diff']:+.4f} "
                             f"(95% CI [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}], Holm p = {num(row['p_holm'], 3)})")
                if row["significant"]:
                    significant.append(display(a, self.alphas))
        if not parts:
            return ""
        zero = self.metric(ZERO_SHOT, "beir", "test", "ndcg@10")[0]
        hybrid = self.metric("hybrid", "beir", "test", "ndcg@10")[0]
        if significant:
            tail = (f" The quality difference against {' and '.join(significant)} is significant after Holm "
                    "correction while the cost is not measurably different: the strategy can be chosen on quality alone.")
        else:
            tail = (" Neither quality difference is significant after Holm correction at this scale, so on BEIR the "
                    "strategies are indistinguishable in cost and, here, in quality.")
        return ("**Quality on BEIR (SciFact nDCG@10):** zero-shot "
                f"{num(zero)}, hybrid {num(hybrid)}; " + "; ".join(parts) + "." + tail)

    def bias_sentence(self) -> str:
        parts = []
        for setting, metric, label in (("cross", "map", "cross mAP"), ("multi", "map", "multi mAP"),
                                       ("multi", "rank_distance", "rank distance")):
            diffs = []
            for a in ("x-x-mono", "x-y"):
                row = self.compare_row("lareqa", a, "hybrid", setting, metric)
                if row is not None:
                    diffs.append(f"{row['diff']:+.4f} vs {display(a, self.alphas)}"
                                 + (" (significant)" if row["significant"] else " (not significant)"))
            if diffs:
                parts.append(f"{label} {', '.join(diffs)}")
        if not parts:
            return ""
        zero = self.metric(ZERO_SHOT, "lareqa", "multi", "rank_distance")[0]
        hybrid = self.metric("hybrid", "lareqa", "multi", "rank_distance")[0]
        return ("**Language bias (XQuAD-R held-out, hybrid − baseline, paired over queries):** " + "; ".join(parts)
                + f". Rank distance: zero-shot {num(zero, 1)}, hybrid {num(hybrid, 1)} (lower is less biased).")

    # -- setup -------------------------------------------------------------------------------------------
    def setup(self) -> list[str]:
        exp = self.exp
        train_cfg = next(iter(self.res.train.values()), None)
        ev, cs = exp["eval_settings"], exp["cost_settings"]
        lines = ["## Setup", "",
                 f"- Starting model: `{exp['zero_shot_model']}` (multilingual-e5-small via the offline import when "
                 "the config says `default`); every strategy starts from it.",
                 "- Strategies (α = probability of a monolingual batch): "
                 + ", ".join(display(s, self.alphas) for s in self.res.strategies)
                 + f"; seeds {exp['seeds']}; identical budget, seed and hyper-parameters otherwise.",
                 f"- Experiment config: `{exp['config_file']}`; per-run training configs: "
                 f"`{rel(self.res.layout.root, REPO_ROOT)}/configs/`."]
        if train_cfg is not None and (REPO_ROOT / train_cfg["config_file"]).is_file():
            from hybridfast.train.config import load_config

            cfg = load_config(REPO_ROOT / train_cfg["config_file"])
            m, d, s, o, t = cfg.model, cfg.data, cfg.sampling, cfg.optim, cfg.train
            lines.append(
                f"- Training: {d.dataset} `{d.path}` split `{d.split}` (held-out fraction {d.eval_fraction}, split "
                f"seed {d.split_seed}), languages {d.languages or 'all'}; batch {s.batch_size} pairs, "
                + (f"{t.steps} steps" if t.steps else f"{t.epochs} epochs")
                + f", AdamW lr {o.lr}, weight decay {o.weight_decay}, warmup {o.warmup_steps}, schedule {o.schedule}, "
                f"temperature {o.temperature}, max lengths {m.query_max_length}/{m.passage_max_length} (query/passage), "
                f"frozen embeddings: {m.freeze_embeddings}, precision {t.precision}."
            )
        lines += [
            f"- Evaluation: query/passage max length {ev['query_max_length']}/{ev['passage_max_length']}, batch "
            f"{ev['batch_size']}, dtype {ev['dtype'] or 'checkpoint'}; XQuAD-R held-out articles, languages "
            f"{ev['lareqa']['langs'] or 'all'}; Tatoeba languages {ev['tatoeba']['langs'] or 'all'}"
            + (f", first {ev['tatoeba']['max_pairs']} pairs each" if ev['tatoeba']['max_pairs'] else "")
            + f"; BEIR `{ev['beir']['data']}` split {ev['beir']['split']}"
            + (f", corpus cut to {ev['beir']['max_docs']} documents (all judged ones plus a seeded random sample)"
               if ev['beir']['max_docs'] else ", full corpus")
            + f". Paired tests: {ev['n_resamples']} resamples, Holm-Bonferroni within each comparison.",
            f"- Inference cost: {cs['passages']} SciFact passages (seeded sample) at {cs['max_length']} tokens, "
            f"{cs['queries']} SciFact queries one at a time, {cs['repeats']} repeats interleaved over models; lean "
            f"path = `hybridfast.load(...).encode` (token budget {cs['lean_max_batch_tokens']}), baseline = "
            f"`hybridfast.serve.baseline.UnfusedEncoder` (batches of {cs['baseline_batch_size']} in input order); "
            f"dtype {cs['dtype'] or 'checkpoint'}.",
            "",
        ]
        return lines

    # -- training ----------------------------------------------------------------------------------------
    def training(self) -> list[str]:
        rows = []
        for run in self.exp["runs"]:
            t = self.res.train.get(run["run"])
            if t is None:
                rows.append([run["run"], run["alpha"], run["seed"], "missing", "", "", "", "", ""])
                continue
            curve = t["loss_curve"]
            rows.append([run["run"], f"{run['alpha']:g}", run["seed"], t["steps"],
                         f"{t['mono_batches']}/{t['cross_batches']}", num(curve[0][1] if curve else None),
                         num(curve[-1][1] if curve else None), num(t["wall_time_s"], 1), num(t["examples_per_s"], 2)])
        return ["## Training", "", table(["run", "α", "seed", "steps", "mono/cross batches", "first loss", "last loss",
                                          "wall s", "pairs/s"], rows), ""]

    # -- XQuAD-R -----------------------------------------------------------------------------------------
    def lareqa(self) -> list[str]:
        if "lareqa" not in self.exp["tasks"]:
            return []
        lines = ["## XQuAD-R, held-out articles (LAReQA)", ""]
        example = next((r for (m, t), r in self.res.evals.items() if t == "lareqa"), None)
        if example is not None:
            counts = example["counts"]
            lines += [f"{len(example['settings']['langs'])} languages, {sum(counts['questions'].values()):,} queries, "
                      f"multilingual pool of {counts['multilingual_pool']:,} candidate sentences "
                      f"({example['settings'].get('eval_articles', '?')} held-out articles). Rank distance: lower is "
                      f"better (less language bias).", ""]
        header = ["model", *[f"{s} {m}" for s, m in LAREQA_COLUMNS]]
        rows = []
        for model in self.models:
            cells = [display(model, self.alphas)]
            for setting, metric in LAREQA_COLUMNS:
                mean, std, n = self.metric(model, "lareqa", setting, metric)
                cells.append(mean_std(mean, std, n, 2 if metric == "rank_distance" else 4))
            rows.append(cells)
        lines += [table(header, rows), ""]
        fig = self.map_figure()
        if fig is not None:
            lines += [self.link(fig, "mAP by setting and strategy"), ""]
        lines += self.rank_distance_per_language()
        return lines

    def map_figure(self) -> Path | None:
        means, errs = {}, {}
        for model in self.models:
            values = [self.metric(model, "lareqa", s, "map") for s in ("mono", "cross", "multi")]
            if any(v[0] is None for v in values):
                continue
            means[display(model, self.alphas)] = [v[0] for v in values]
            errs[display(model, self.alphas)] = [v[1] if v[2] > 1 else 0.0 for v in values]
        if not means:
            return None
        return figures.grouped_bars(self.figure("map_by_setting.png"), ["mono", "cross", "multi"], means,
                                    errs if self.seeds > 1 else None,
                                    title="XQuAD-R held-out mAP" + (f" (± std over {self.seeds} seeds)" if self.seeds > 1 else ""),
                                    ylabel="mAP")

    def rank_distance_per_language(self) -> list[str]:
        langs: list[str] = []
        per_model: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {}
        for model in self.models:
            pooled = self.res.pooled(model, "lareqa")
            if pooled is None:
                continue
            per_model[model] = pooled
            langs = langs or list(pooled[0]["per_language"]["multi"])
        if not per_model:
            return []
        rows, means, errs = [], {}, {}
        for model, (mean, std, n) in per_model.items():
            multi, multi_std = mean["per_language"]["multi"], std["per_language"]["multi"]
            values = [multi.get(lang, {}).get("rank_distance") for lang in langs]
            rows.append([display(model, self.alphas),
                         *[mean_std(v, multi_std.get(lang, {}).get("rank_distance"), n, 1) for v, lang in zip(values, langs, strict=True)]])
            means[display(model, self.alphas)] = values
            errs[display(model, self.alphas)] = [multi_std.get(lang, {}).get("rank_distance") if n > 1 else 0.0 for lang in langs]
        fig = figures.grouped_bars(self.figure("rank_distance_per_language.png"), langs, means,
                                   errs if self.seeds > 1 else None,
                                   title="Language bias: mean rank distance per query language (multi setting)",
                                   ylabel="rank distance (lower is better)", width_per_group=0.9)
        return ["### Language bias: rank distance per query language", "",
                table(["model", *langs], rows), "", self.link(fig, "rank distance per language"), ""]

    # -- Tatoeba -----------------------------------------------------------------------------------------
    def tatoeba(self) -> list[str]:
        if "tatoeba" not in self.exp["tasks"]:
            return []
        seen = set(self.exp.get("tatoeba_seen", []))
        per_model = {m: self.res.pooled(m, "tatoeba") for m in self.models}
        per_model = {m: p for m, p in per_model.items() if p is not None}
        if not per_model:
            return ["## Tatoeba", "", "No results yet.", ""]
        langs = list(next(iter(per_model.values()))[0]["per_language"])
        header = ["model", *[f"{lang}{'' if lang in seen else ' (unseen)'}" for lang in langs], "macro", "seen", "unseen"]
        rows = []
        for model, (mean, std, n) in per_model.items():
            table_ = mean["per_language"]
            seen_values = [table_[lang]["mean"] for lang in langs if lang in seen]
            unseen_values = [table_[lang]["mean"] for lang in langs if lang not in seen]
            rows.append([display(model, self.alphas),
                         *[mean_std(table_[lang]["mean"], std["per_language"][lang]["mean"], n, 3) for lang in langs],
                         mean_std(mean["metrics"]["tatoeba"]["accuracy"], std["metrics"]["tatoeba"]["accuracy"], n, 4),
                         num(_avg(seen_values)), num(_avg(unseen_values))])
        pairs = next(iter(per_model.values()))[0]["per_language"][langs[0]]["pairs"]
        return ["## Tatoeba bitext retrieval", "",
                f"Accuracy, mean of both directions ({pairs} pairs per language; *(unseen)*: not a training language).",
                "", table(header, rows), ""]

    # -- BEIR --------------------------------------------------------------------------------------------
    def beir(self) -> list[str]:
        if "beir" not in self.exp["tasks"]:
            return []
        split = self.exp["eval_settings"]["beir"]["split"]
        rows, metric_names, docs = [], [], None
        for model in self.models:
            pooled = self.res.pooled(model, "beir")
            if pooled is None:
                continue
            mean, std, n = pooled
            metric_names = metric_names or list(mean["metrics"][split])
            docs = mean["counts"]["documents"]
            rows.append([display(model, self.alphas),
                         *[mean_std(mean["metrics"][split][m], std["metrics"][split][m], n) for m in metric_names]])
        if not rows:
            return ["## BEIR SciFact", "", "No results yet.", ""]
        note = (f"Corpus: {docs:,} documents. The published nDCG@10 of multilingual-e5-small on the full corpus at "
                f"512 tokens is {E5_SMALL_SCIFACT_NDCG10} (model card / MTEB)")
        if self.exp["eval_settings"]["beir"]["max_docs"] or self.exp["eval_settings"]["passage_max_length"] < 512:
            note += "; this run's corpus or max length differs, so its absolute numbers are not comparable to it"
        return ["## BEIR SciFact", "", note + ".", "", table(["model", *metric_names], rows), ""]

    # -- α sweep -----------------------------------------------------------------------------------------
    def alpha_sweep(self) -> list[str]:
        alphas = sorted(self.exp["alphas"])
        if len(alphas) < 3:
            return []
        series = [("lareqa", "mono", "map", "XQuAD-R mono mAP"), ("lareqa", "cross", "map", "XQuAD-R cross mAP"),
                  ("lareqa", "multi", "map", "XQuAD-R multi mAP"), ("tatoeba", "tatoeba", "accuracy", "Tatoeba acc."),
                  ("beir", self.exp["eval_settings"]["beir"]["split"], "ndcg@10", "SciFact nDCG@10")]
        means, errs, ref = {}, {}, {}
        for task, setting, metric, label in series:
            if task not in self.exp["tasks"]:
                continue
            values = [self.metric(strategy_name(a), task, setting, metric) for a in alphas]
            if any(v[0] is None for v in values):
                continue
            means[label] = [v[0] for v in values]
            errs[label] = [v[1] if v[2] > 1 else 0.0 for v in values]
            ref[label] = self.metric(ZERO_SHOT, task, setting, metric)[0]
        if not means:
            return []
        fig = figures.lines_vs_alpha(self.figure("metric_vs_alpha.png"), alphas, means, errs, ref,
                                     title="Quality vs α" + (f" (± std over {self.seeds} seeds)" if self.seeds > 1 else ""))
        rows = [[label, *[num(v) for v in values], num(ref[label])] for label, values in means.items()]
        return ["## Quality against α", "", table(["metric", *[f"α={a:g}" for a in alphas], "zero-shot"], rows), "",
                self.link(fig, "metric vs alpha"), ""]

    # -- significance ------------------------------------------------------------------------------------
    def significance(self) -> list[str]:
        lines = ["## Paired significance tests", "",
                 "`hybridfast eval compare` (`hybridfast.eval.compare_results`): paired randomization test and "
                 "bootstrap 95% CI of B − A over queries"
                 + (", per-query scores averaged over seeds first" if self.seeds > 1 else "")
                 + "; p-values Holm-Bonferroni adjusted within each comparison (one task, one pair). Means are over "
                 "the queries the two share (micro), so they can differ slightly from the macro averages above. "
                 "LAReQA per-query values: mono = the query in its own language's pool, cross = its mean over the "
                 "other languages' pools, multi = the full multilingual pool. For rank distance lower is better.", ""]
        header = ["task", "setting", "metric", "n", "A", "B", "B − A", "95% CI", "p", "p (Holm)", "significant"]
        for pair in _unique_pairs(self.exp["comparisons"]):
            a, b = pair
            rows = []
            for task in self.exp["tasks"]:
                comparison = self.res.compares.get((task, a, b))
                if comparison is None:
                    continue
                for r in comparison["rows"]:
                    sig = f"**yes ({'B' if r['better'] == 'B' else 'A'} better)**" if r["significant"] else "no"
                    rows.append([task, r["setting"], r["metric"], r["queries"], num(r["mean_a"]), num(r["mean_b"]),
                                 f"{r['diff']:+.4f}", f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
                                 num(r["p"], 4), num(r["p_holm"], 4), sig])
            if rows:
                lines += [f"### B = {display(b, self.alphas)} vs A = {display(a, self.alphas)}", "",
                          table(header, rows), ""]
        return lines

    # -- cost --------------------------------------------------------------------------------------------
    def inference_cost(self) -> list[str]:
        cost = self.res.cost
        if cost is None:
            return ["## Inference cost", "", "Not measured yet.", ""]
        lines = ["## Inference cost on SciFact text", "",
                 f"Device {cost['device']}" + (f" (torch threads: {cost['torch_threads']})" if "torch_threads" in cost else "")
                 + f"; {cost['texts']['passages']} passages, {cost['texts']['queries']} queries; "
                 f"mean ± std over {cost['settings']['repeats']} interleaved repeats.", ""]
        summary = cost["summary"]
        rows = []
        for path in ("lean", "baseline"):
            for model, metrics in summary.get(path, {}).items():
                rows.append([model, path, *[f"{num(metrics[m]['mean'], 1 if 'tokens' in m else 2)} ± "
                                            f"{num(metrics[m]['std'], 1 if 'tokens' in m else 2)}" for m, _ in COST_METRICS]])
        lines += [table(["model", "path", *[label for _, label in COST_METRICS]], rows), ""]
        info_rows = [[model, num(i["parameters"]), num(i["passage_tokens"]), num(i.get("baseline_padded_passage_tokens")),
                      num(i["query_tokens"]), i["lean_backend"], num(i["min_cosine_lean_vs_baseline"], 6)]
                     for model, i in cost["models"].items()]
        lines += [table(["model", "parameters", "passage tokens (real)", "baseline token slots (padded)", "query tokens",
                         "lean backend", "min cosine lean vs baseline"], info_rows), ""]
        spread_rows = []
        for path in ("lean", "baseline"):
            s = spread(cost, path)
            for metric, label in COST_METRICS:
                spread_rows.append([path, label, pct(s[metric]["between"]), pct(s[metric]["within"]),
                                    pct(s[metric]["cv"]), num(s[metric]["anova_p"], 3)])
        lines += ["Do the strategies' models differ in cost? *Between models*: (max − min) / mean of the models' mean "
                  "values. *Within*: the largest (max − min) / mean over one model's repeats (run-to-run noise). "
                  "*CV*: the largest coefficient of variation over repeats. ANOVA: one-way, the models' repeats as groups.",
                  "", table(["path", "metric", "between models", "within (noise)", "CV", "ANOVA p"], spread_rows), ""]
        speed = speedups(cost)
        if speed:
            lines += [table(["lean ÷ baseline", "mean", "min", "max"],
                            [["throughput (passages/s)", num(speed["throughput_mean"], 3), num(speed["throughput_min"], 3),
                              num(speed["throughput_max"], 3)],
                             ["p50 latency", num(speed["p50_mean"], 3), num(speed["p50_min"], 3), num(speed["p50_max"], 3)]]),
                      ""]
        for metric, label in COST_METRICS:
            groups = list(summary.get("lean", {}))
            means = {path: [summary[path][m][metric]["mean"] for m in groups] for path in summary}
            errs = {path: [summary[path][m][metric]["std"] for m in groups] for path in summary}
            fig = figures.grouped_bars(self.figure(f"{metric}.png"), groups, means, errs,
                                       title=f"{label}, mean ± std over repeats", ylabel=label)
            lines.append(self.link(fig, f"{label} by model and path"))
        lines.append("")
        return lines

    # -- seed paper --------------------------------------------------------------------------------------
    def seed_paper(self) -> list[str]:
        if "lareqa" not in self.exp["tasks"]:
            return []
        rows = []
        for (setting, metric), paper in SEED_PAPER.items():
            lower = metric == "rank_distance"
            for base in ("x-x-mono", "x-y"):
                if base not in self.alphas or "hybrid" not in self.alphas:
                    continue
                paper_diff = paper["hybrid"] - paper[base]
                ours = self.compare_row("lareqa", base, "hybrid", setting, metric)
                ours_macro = [self.metric(m, "lareqa", setting, metric)[0] for m in (base, "hybrid")]
                if ours is None or None in ours_macro:
                    rows.append([f"{setting} {metric}", f"hybrid − {display(base, self.alphas)}",
                                 f"{paper_diff:+.3f}", "–", "–", "–", "–"])
                    continue
                our_diff = ours_macro[1] - ours_macro[0]
                if paper_diff == 0:
                    agrees = "yes" if not ours["significant"] else "no"
                elif our_diff == 0:
                    agrees = "no effect here"
                else:
                    agrees = "yes" if _improves(paper_diff, lower) == _improves(our_diff, lower) else "no"
                rows.append([f"{setting} {metric}", f"hybrid − {display(base, self.alphas)}",
                             f"{paper_diff:+.3f} ({_direction(paper_diff, lower)})",
                             f"{our_diff:+.4f} ({_direction(our_diff, lower)})",
                             f"[{ours['ci_low']:+.4f}, {ours['ci_high']:+.4f}]",
                             "yes" if ours["significant"] else "no", agrees])
        return ["## Direction of effects vs the seed paper", "",
                f"Published figures: {SEED_PAPER_SOURCE} (XLM-R, full fine-tuning; not measured here). Ours: macro "
                "averages of this run (hybrid − baseline), the CI and significance from the paired test above. "
                "*Agrees*: same sign of the effect (for a published difference of zero: ours not significant).", "",
                table(["quantity", "difference", "paper (XLM-R)", "ours", "ours 95% CI (paired, micro)",
                       "ours significant", "agrees"], rows), ""]

    # -- limits ------------------------------------------------------------------------------------------
    def limits(self) -> list[str]:
        exp, ev = self.exp, self.exp["eval_settings"]
        steps = [t["steps"] for t in self.res.train.values()]
        batch = None
        if self.res.train:
            from hybridfast.train.config import load_config

            cfg_path = REPO_ROOT / next(iter(self.res.train.values()))["config_file"]
            if cfg_path.is_file():
                batch = load_config(cfg_path).sampling.batch_size
        bullets = [
            f"One small starting model (`{Path(exp['zero_shot_model']).name}`) that is already trained for retrieval, "
            "and XQuAD-sized training data: the paper fine-tunes XLM-R / LaBSE from masked-LM weights, so effect sizes "
            "are not expected to transfer one to one.",
        ]
        if steps:
            bullets.append(f"Training budget: {max(steps)} steps of {batch} pairs per strategy"
                           + (" — a small fraction of one epoch, with the paper's batch of 100 out of reach on this machine; "
                              "differences between strategies are correspondingly small." if exp.get("reduced") else "."))
        if self.seeds == 1:
            bullets.append("One seed per strategy: the paired tests capture query-sampling noise, not training-seed "
                           "variance; a difference can be significant over queries and still not survive another seed.")
        if ev["beir"]["max_docs"]:
            bullets.append(f"SciFact corpus cut to {ev['beir']['max_docs']} documents and passages to "
                           f"{ev['passage_max_length']} tokens: absolute nDCG@10 is not comparable to published numbers; "
                           "the comparison between strategies (same corpus for all) is.")
        if ev["tatoeba"]["max_pairs"]:
            bullets.append(f"Tatoeba: {len(ev['tatoeba']['langs']) or 'all'} languages, first {ev['tatoeba']['max_pairs']} "
                           "pairs each.")
        if self.res.cost is not None:
            cpus = (exp.get("invocations") or [{}])[-1].get("hardware", {}).get("cpu_count")
            bullets.append("Cost measured on one machine"
                           + (f" shared with other jobs ({cpus} CPU cores; see the load averages of the steps): absolute "
                              "numbers are noisy, which is why the repeats are interleaved and the within-model spread "
                              "is reported next to the between-model one" if exp.get("device") == "cpu" else "")
                           + f"; the lean path's backend here: {next(iter(self.res.cost['models'].values()))['lean_backend']}.")
        return ["## Limits", "", *[f"- {b}" for b in bullets], ""]

    # -- reproduction ------------------------------------------------------------------------------------
    def invocations(self) -> list[dict[str, Any]]:
        seen, merged = set(), []
        for inv in [*self.exp.get("invocations", []), *self.res.layout.invocations()]:
            key = (inv["command"], inv["started"])
            if key not in seen:
                seen.add(key)
                merged.append(inv)
        return sorted(merged, key=lambda inv: inv["started"])

    def reproduction(self) -> list[str]:
        invocations = self.invocations()
        last = next((inv for inv in reversed(invocations) if inv.get("finished")), invocations[-1] if invocations else {})
        lines = ["## Reproduction, hardware, versions, wall times", "",
                 "One command runs everything (resumable; finished steps are skipped):", "", "```",
                 f"python benchmarks/research/experiment.py --config {self.exp['config_file']}",
                 f"python benchmarks/research/report.py --results {rel(self.res.layout.root, REPO_ROOT)} "
                 f"--out {rel(self.out, REPO_ROOT)}", "```", ""]
        if invocations:
            rows = [[f"`{inv['command']}`", inv["started"], inv["finished"] or "not recorded",
                     num(inv["wall_s"], 0), inv["hardware"].get("torch_threads")] for inv in invocations]
            lines += ["Invocations recorded for this results folder (parallel ones split the models with `--runs`). "
                      "One without a recorded finish was either stopped early (its finished steps, if any, are in the "
                      "step table) or ran in parallel under an earlier driver version whose invocations shared one "
                      "record file; the step table below is the authoritative record of what produced each result.", "",
                      table(["command", "started (UTC)", "finished (UTC)", "wall s", "torch threads"], rows), ""]
        if last:
            hw = last["hardware"]
            lines += [f"- Hardware: {hw.get('cpu')} ({hw.get('cpu_count')} logical CPUs, {hw.get('memory_gib')} GiB), "
                      f"device {hw.get('device')}" + (f", GPU {hw['gpu']}" if hw.get("gpu") else "")
                      + f"; {hw.get('system')}.",
                      "- Versions: " + ", ".join(f"{k} {v}" for k, v in last["versions"].items()) + "."]
        done = [s for s in self.res.steps if s["status"] == "done"]
        if done:
            first = min(s["started"] for s in done)
            end = max(s["finished"] for s in done)
            elapsed = (_parse_utc(end) - _parse_utc(first)) / 60
            serial = sum(s["wall_s"] for s in done) / 60
            busy = _union_minutes([(_parse_utc(s["started"]), _parse_utc(s["finished"])) for s in done])
            lines.append(f"- Wall time: the result steps kept the machine busy for {num(busy, 1)} min of wall-clock "
                         f"time (union of their intervals, idle gaps between invocations excluded); {num(elapsed, 1)} min "
                         f"from the first one's start ({first}) to the last one's end ({end}); their own wall times add "
                         f"up to {num(serial, 1)} min (steps of parallel invocations overlap and share the CPUs).")
        rows = [[s["step"], num(s["wall_s"], 1), s["started"], num(s.get("load_avg_start"), 1),
                 num(s.get("load_avg_end"), 1), s["what"]] for s in done]
        lines += ["", "Wall time of each step that produced a result file, and the machine's 1-minute load average at "
                  "its start and end (a load above the core count means other jobs shared the CPUs):", "",
                  table(["step", "wall s", "started (UTC)", "load at start", "load at end", "what ran"], rows), ""]
        return lines

    def render(self) -> str:
        sections = [self.header(), self.answer(), self.setup(), self.training(), self.lareqa(), self.tatoeba(),
                    self.beir(), self.alpha_sweep(), self.significance(), self.inference_cost(), self.seed_paper(),
                    self.limits(), self.reproduction()]
        return "\n".join(line for section in sections for line in section).rstrip() + "\n"


# ---- cost statistics --------------------------------------------------------------------------------------
def spread(cost: dict[str, Any], path: str) -> dict[str, dict[str, float | None]]:
    """Between-model vs within-model relative spread of each cost metric, and a one-way ANOVA p-value."""
    from scipy.stats import f_oneway

    out: dict[str, dict[str, float | None]] = {}
    summary = cost["summary"].get(path, {})
    for metric, _ in COST_METRICS:
        groups = {model: [s[metric] for s in cost["samples"] if s["path"] == path and s["model"] == model]
                  for model in summary}
        means = [sum(v) / len(v) for v in groups.values() if v]
        if not means:
            out[metric] = {"between": None, "within": None, "cv": None, "anova_p": None}
            continue
        grand = sum(means) / len(means)
        within = max((max(v) - min(v)) / (sum(v) / len(v)) for v in groups.values())
        cv = max(summary[m][metric]["std"] / summary[m][metric]["mean"] for m in groups)
        anova = None
        if len(groups) > 1 and all(len(v) > 1 for v in groups.values()):
            anova = float(f_oneway(*groups.values()).pvalue)
        out[metric] = {"between": (max(means) - min(means)) / grand, "within": within, "cv": cv, "anova_p": anova}
    return out


def verdict(stats: dict[str, dict[str, float | None]]) -> str:
    """Plain words for whether the models' cost differs beyond the measured noise."""
    inside = [m for m, label in COST_METRICS if stats[m]["between"] is not None and stats[m]["within"] is not None
              and stats[m]["between"] <= stats[m]["within"]]
    labels = dict(COST_METRICS)
    if len(inside) == len(COST_METRICS):
        return ("For every cost metric the difference between models is within one model's run-to-run spread: "
                "no measurable effect of the training strategy on latency or throughput.")
    outside = [labels[m] for m, _ in COST_METRICS if m not in inside]
    return (f"For {', '.join(outside)} the spread between models exceeds one model's run-to-run range in this run; "
            "since the models compute the same operations on the same tokens, read this as drift of a shared machine "
            "rather than an effect of the strategy (see the ANOVA p-values and the per-repeat table).")


def speedups(cost: dict[str, Any]) -> dict[str, float] | None:
    summary = cost["summary"]
    if "lean" not in summary or "baseline" not in summary:
        return None
    models = [m for m in summary["lean"] if m in summary["baseline"]]
    throughput = [summary["lean"][m]["passages_per_s"]["mean"] / summary["baseline"][m]["passages_per_s"]["mean"] for m in models]
    p50 = [summary["lean"][m]["latency_p50_ms"]["mean"] / summary["baseline"][m]["latency_p50_ms"]["mean"] for m in models]
    return {"throughput_mean": _avg(throughput), "throughput_min": min(throughput), "throughput_max": max(throughput),
            "p50_mean": _avg(p50), "p50_min": min(p50), "p50_max": max(p50)}


def _union_minutes(intervals: Sequence[tuple[float, float]]) -> float:
    """Total length in minutes of the union of [start, end] intervals given in seconds."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total / 60


def _parse_utc(stamp: str) -> float:
    import calendar
    import time

    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


def _improves(diff: float, lower_is_better: bool) -> bool:
    return diff < 0 if lower_is_better else diff > 0


def _direction(diff: float, lower_is_better: bool) -> str:
    if diff == 0:
        return "equal"
    return "better" if _improves(diff, lower_is_better) else "worse"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _avg(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _unique_pairs(comparisons: Sequence[dict[str, str]]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for c in comparisons:
        if (c["a"], c["b"]) not in pairs:
            pairs.append((c["a"], c["b"]))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write REPORT.md and its PNG plots from a research experiment's results.")
    parser.add_argument("--results", required=True, type=Path, help="results folder, e.g. benchmarks/research/results/cpu-reduced")
    parser.add_argument("--out", required=True, type=Path, help="the report to write, e.g. benchmarks/research/REPORT.md")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    report = Report(results, args.out)
    text = report.render()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    status = "INCOMPLETE (" + str(len(results.missing)) + " steps missing)" if results.missing else "complete"
    print(f"wrote {args.out} ({status}); figures in {report.figure_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
