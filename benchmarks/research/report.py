"""Generate REPORT.md and its plots from one research experiment's result files (no hand-typed numbers).

    python benchmarks/research/report.py --results benchmarks/research/results/cpu-reduced \\
        --out benchmarks/research/REPORT.md

Every number and verdict comes from `findings.py`, which reads the files `experiment.py` writes (see `layout.py`);
this module only turns them into tables, sentences and plots (`figures/{experiment name}/` beside the report).
Steps that have not finished are listed as missing and the report is marked incomplete. The only numbers not
measured here are the seed paper's published figures (`findings.SEED_PAPER`), quoted with their source.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import figures  # noqa: E402
import findings as fd  # noqa: E402
from layout import ZERO_SHOT, strategy_name  # noqa: E402

from hybridfast.eval.compare import MIN_SENSITIVITY_CLUSTERS  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
# multilingual-e5-small's published SciFact nDCG@10 (model card / MTEB), full corpus, 512 tokens.
E5_SMALL_SCIFACT_NDCG10 = 0.677
LAREQA_COLUMNS = [("mono", "map"), ("cross", "map"), ("multi", "map"), ("multi", "rank_distance"), ("mono", "r@1"),
                  ("cross", "r@1"), ("multi", "hit@1")]
ENDPOINT_LABELS = {("lareqa", "multi", "map"): "XQuAD-R multi mAP", ("lareqa", "multi", "rank_distance"): "rank distance",
                   ("lareqa", "mono", "map"): "XQuAD-R mono mAP", ("lareqa", "cross", "map"): "XQuAD-R cross mAP",
                   ("beir", "test", "ndcg@10"): "SciFact nDCG@10"}


# ---- formatting -------------------------------------------------------------------------------------------
def num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def digits_for(metric: str) -> int:
    return 1 if metric == "rank_distance" else 4


def with_ci(est: fd.Estimate | None, metric: str) -> str:
    if est is None:
        return "–"
    d = digits_for(metric)
    return f"{num(est.mean, d)} [{num(est.ci_low, d)}, {num(est.ci_high, d)}]"


def signed_ci(test: dict[str, Any], metric: str) -> str:
    d = digits_for(metric)
    return f"{test['diff']:+.{d}f} [{test['ci_low']:+.{d}f}, {test['ci_high']:+.{d}f}]"


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


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def label(endpoint: tuple[str, str, str]) -> str:
    return ENDPOINT_LABELS.get(endpoint, "/".join(endpoint))


# ---- the report -------------------------------------------------------------------------------------------
class Report:
    def __init__(self, res: fd.Results, out: Path, n_resamples: int = 2_000):
        self.res = res
        self.out = out
        self.exp = res.experiment
        self.alphas = {strategy_name(a): a for a in self.exp["alphas"]}
        self.models = [ZERO_SHOT, *res.strategies]
        self.figure_dir = out.parent / "figures" / self.exp["name"]
        self.endpoints = fd.primary_endpoints(res)
        self.n_resamples = n_resamples
        self._estimates: dict[tuple[str, str, str, str], fd.Estimate | None] = {}

    def estimate(self, model: str, task: str, setting: str, metric: str) -> fd.Estimate | None:
        key = (model, task, setting, metric)
        if key not in self._estimates:
            self._estimates[key] = fd.arm_estimate(self.res, model, task, setting, metric, n_resamples=self.n_resamples,
                                                   unit=self.exp["stats_settings"]["unit"])
        return self._estimates[key]

    def name(self, model: str) -> str:
        return display(model, self.alphas)

    def figure(self, name: str) -> Path:
        return self.figure_dir / name

    def link(self, path: Path, caption: str) -> str:
        return f"![{caption}]({rel(path, self.out.parent)})"

    # -- header ------------------------------------------------------------------------------------------
    def header(self) -> list[str]:
        exp = self.exp
        root = rel(self.res.layout.root, REPO_ROOT)
        lines = ["# Research report: monolingual, cross-lingual and hybrid batches — quality, language bias, inference cost",
                 "",
                 f"> Generated by `python benchmarks/research/report.py --results {root} --out {rel(self.out, REPO_ROOT)}` "
                 f"from the result files in `{root}/`. Do not edit by hand: every number and verdict below is computed "
                 "from those files (`benchmarks/research/findings.py`), except the seed paper's published figures, "
                 "which are quoted with their source.", "", f"**Run:** {exp['label']}", ""]
        if exp.get("reduced"):
            lines += ["**This is a REDUCED run** (see *Setup* and *Limits*): a small model, short max lengths, few "
                      "steps at batch 16, subsampled evaluation sets. It tests the pipeline and shows what such a "
                      "budget can and cannot resolve; it is not the full experiment (`benchmarks/research/gpu_full.toml`).", ""]
        if self.res.missing:
            lines += ["**INCOMPLETE:** these steps had not finished when the report was generated: "
                      + "; ".join(self.res.missing) + ". Re-running the `experiment.py` command of that stage resumes them.", ""]
        return lines

    # -- answer ------------------------------------------------------------------------------------------
    def answer(self) -> list[str]:
        lines = ["## Answer to the research question", "",
                 "*What is the impact of simultaneous monolingual and cross-lingual optimization on the inference "
                 "latency and throughput of multilingual retrieval models evaluated on BEIR?*", ""]
        bullets = [self.cost_claim(), *self.quality_claims(), self.recommendation_claim()]
        return lines + [f"- {b}" for b in bullets if b] + [""]

    def cost_claim(self) -> str:
        cost = self.res.cost
        command = f"python benchmarks/research/experiment.py --config {self.exp['config_file']} --stages timing"
        if cost is None:
            return ("**Inference cost: not measured in this run.** The timing stage needs an otherwise idle machine "
                    f"and had not run when this report was generated (`{command}`). What holds without a measurement: "
                    "every strategy yields the same architecture with the same parameter count and tokenizer, so the "
                    "computation per text is identical by construction; only a measurement can show whether anything "
                    "else (e.g. different padding from different lengths) differs.")
        margin = self.exp["stats_settings"]["cost_margin"]
        verdicts = {path: fd.cost_verdict(cost, path, margin) for path in ("lean", "baseline")}
        infos = list(cost["models"].values())
        same = len({i["parameters"] for i in infos}) == 1 and len({i["passage_tokens"] for i in infos}) == 1
        parts = []
        for path, v in verdicts.items():
            if v is None:
                continue
            if v["all_equivalent"]:
                parts.append(f"{path} path: all {v['tests']} model pairs equivalent within ±{100 * v['margin']:g} % "
                             f"(paired TOST, 90% CIs of the ratios within [{v['widest_ci'][0]:.3f}, {v['widest_ci'][1]:.3f}])")
            else:
                parts.append(f"{path} path: {v['equivalent']} of {v['tests']} comparisons (model pairs × throughput and "
                             f"mean latency) shown equivalent within ±{100 * v['margin']:g} %, the 90% CIs of the ratios "
                             f"spanning [{v['widest_ci'][0]:.3f}, {v['widest_ci'][1]:.3f}]; {v['differ']} of the "
                             f"{v['tests']} have a 95% CI excluding 1 (unadjusted)")
        all_equivalent = all(v and v["all_equivalent"] for v in verdicts.values())
        any_differ = any(v and v["differ"] for v in verdicts.values())
        headline = ("equivalent within the margin" if all_equivalent else
                    "not shown equivalent, and no difference shown either: the measurement is too noisy to decide"
                    if not any_differ else "not shown equivalent; some ratios differ from 1 before any multiplicity "
                    "correction")
        return (f"**Inference cost across training strategies: {headline}.** Models {', '.join(cost['models'])} on "
                f"{cost.get('device_name', cost['device'])} ({cost['torch_threads']} torch threads), "
                f"{cost['settings']['repeats']} interleaved repeats: " + "; ".join(parts) + ". "
                + ("They have the same architecture and parameter count and see the same tokens: the strategy changes "
                   "weight values, not the computation." if same else "Their parameter or token counts differ."))

    def quality_claims(self) -> list[str]:
        if self.res.family is None:
            return ["**Quality: the primary tests have not run yet.**"]
        claims = []
        for endpoint in self.endpoints:
            task, setting, metric = endpoint
            zero = self.estimate(ZERO_SHOT, task, setting, metric)
            parts = []
            for strategy in self.res.strategies:
                est = self.estimate(strategy, task, setting, metric)
                test = fd.family_test(self.res, task, ZERO_SHOT, strategy, setting, metric)
                verdict = fd.effect_verdict(test) if test else "not tested"
                parts.append(f"{self.name(strategy)} {with_ci(est, metric)}, {verdict} than zero-shot"
                             if verdict in ("better", "worse") else f"{self.name(strategy)} {with_ci(est, metric)}, "
                             f"{verdict} from zero-shot")
            pairs = []
            for base in ("x-x-mono", "x-y"):
                test = fd.family_test(self.res, task, base, "hybrid", setting, metric)
                if test is not None:
                    verdict = fd.effect_verdict(test)
                    eq = test.get("equivalence")
                    if verdict == "no significant difference" and eq and eq["equivalent"]:
                        verdict += f"; equivalent within ±{eq['margin']:g}, TOST Holm p {num(eq['p_holm'], 3)}"
                    pairs.append(f"hybrid − {self.name(base)} {signed_ci(test, metric)}, Holm p {num(test['p_holm'], 3)}"
                                 f" ({verdict if verdict.startswith('no significant') else 'hybrid ' + verdict})")
            direction = " (lower is better)" if metric in fd.LOWER_IS_BETTER else ""
            claims.append(f"**{label(endpoint)}{direction}:** zero-shot {with_ci(zero, metric)}; " + "; ".join(parts)
                          + (". " + "; ".join(pairs) if pairs else "") + ".")
        return claims

    def recommendation_claim(self) -> str:
        rec = fd.recommendation(self.res)
        if self.res.family is None:
            return "**What the tests support:** nothing yet: the primary tests have not run."
        if rec["strategy"] is not None:
            return (f"**What the tests support:** {self.name(rec['strategy'])}: {rec['reason']} (after Holm-Bonferroni "
                    "over all primary tests).")
        return (f"**What the tests support:** no choice of strategy. {rec['reason'][0].upper()}{rec['reason'][1:]} "
                "(after Holm-Bonferroni over all primary tests), so this run gives no ground to prefer one strategy, "
                "nor to prefer training over the zero-shot model beyond the endpoints where the table above shows it.")

    # -- setup -------------------------------------------------------------------------------------------
    def setup(self) -> list[str]:
        exp = self.exp
        ev, st = exp["eval_settings"], exp["stats_settings"]
        train_cfg = next(iter(self.res.train.values()), None)
        lines = ["## Setup", ""]
        start = f"- Start model: `{rel(Path(exp['zero_shot_model']), REPO_ROOT)}`"
        if self.res.pruning:
            p = self.res.pruning
            start += (f": multilingual-e5-small with its vocabulary pruned to the pieces this experiment's texts use "
                      f"({p['vocab_before']:,} → {p['vocab_after']:,} rows, {p['params_before']:,} → "
                      f"{p['params_after']:,} parameters; all {p['corpus_texts']:,} texts tokenize exactly as before, "
                      f"so it is the zero-shot model on these data)")
        lines.append(start + "; every strategy starts from it, and it is the zero-shot baseline.")
        lines.append("- Strategies: " + ", ".join(self.name(s) for s in self.res.strategies)
                     + f"; α is the share of monolingual steps: exactly round(α·S) of the S steps are monolingual, in a "
                     f"seeded random order (`sampling.alpha_schedule = \"exact\"`); seeds {exp['seeds']}; identical "
                     "budget and hyper-parameters otherwise; runs trained one after another.")
        if exp.get("positives") == "sentence-in-context":
            lines.append("- Train/eval format: every training positive is the question's gold answer *sentence followed "
                         "by its paragraph*, built from the XQuAD-R training articles, and every evaluation candidate is "
                         "encoded the same way (LAReQA's candidate format, Roy et al. 2020): training and evaluation "
                         "see one text format. Negatives are in-batch only: the other sentences of the answer's own "
                         "paragraph, which share its context text and are the pool's hardest distractors, appear as "
                         "negatives only when two questions of one paragraph meet in a batch.")
        else:
            lines.append("- Train/eval format: training positives are whole paragraphs (XQuAD); evaluation candidates "
                         + ("are sentences followed by their paragraph." if ev["lareqa"]["with_context"]
                            else "are single sentences without context: the two formats differ."))
        if train_cfg is not None and (REPO_ROOT / train_cfg["config_file"]).is_file():
            from hybridfast.train.config import load_config

            cfg = load_config(REPO_ROOT / train_cfg["config_file"])
            m, s, o, t = cfg.model, cfg.sampling, cfg.optim, cfg.train
            lines.append(f"- Training: batch {s.batch_size} pairs, {t.steps} steps, AdamW lr {o.lr}, weight decay "
                         f"{o.weight_decay}, warmup {o.warmup_steps}, schedule {o.schedule}, temperature {o.temperature}, "
                         f"max lengths {m.query_max_length}/{m.passage_max_length} (query/passage), embeddings "
                         f"{'frozen' if m.freeze_embeddings else 'trained'}, precision {t.precision}; config files in "
                         f"`{rel(self.res.layout.root, REPO_ROOT)}/configs/`.")
        lareqa_articles = ev["lareqa"].get("articles") or "all"
        lines += [
            f"- Evaluation: XQuAD-R held-out articles ({lareqa_articles} of them), languages "
            f"{ev['lareqa']['langs'] or 'all'}, query/passage max length {ev['query_max_length']}/{ev['passage_max_length']}; "
            f"Tatoeba {ev['tatoeba']['langs'] or 'all languages'}"
            + (f", first {ev['tatoeba']['max_pairs']} pairs each" if ev["tatoeba"]["max_pairs"] else "")
            + f"; SciFact split {ev['beir']['split']}"
            + (f", {ev['beir']['max_queries']} queries (seeded sample)" if ev["beir"].get("max_queries") else "")
            + (f", corpus cut to {ev['beir']['max_docs']} documents (their judged ones plus a seeded random sample)"
               if ev["beir"]["max_docs"] else ", full corpus")
            + f", documents at {ev['beir'].get('passage_max_length') or ev['passage_max_length']} tokens.",
            f"- Learning curves: XQuAD-R scores on the first {ev['curve']['articles']} held-out article(s) every "
            f"{ev['curve']['every']} steps, through the training loop's eval hook." if ev["curve"]["every"] else
            "- Learning curves: off.",
            f"- Statistics (declared before the results): primary endpoints {', '.join(st['primary'])}; every "
            f"comparison of hybrid with each baseline and of each strategy with the zero-shot model tests them, and "
            f"Holm-Bonferroni runs over the whole family (α = {st['alpha']}). Everything else is exploratory (estimate, "
            f"CI and unadjusted p, no verdict). Tests: two-factor bootstrap, {st['n_resamples']:,} resamples of the "
            f"training seeds (per strategy) and the queries' {st['unit']}s (all translations of a question together); "
            f"the {', '.join(st['sensitivity_units'])} level as a sensitivity column. Equivalence (TOST): ±{st['map_margin']} "
            f"for mAP and nDCG@10, ±{st['rank_distance_margin']} for rank distance, ±{100 * st['cost_margin']:g} % for "
            "cost ratios.",
            "",
        ]
        return lines

    # -- training ----------------------------------------------------------------------------------------
    def training(self) -> list[str]:
        rows = []
        for mix in fd.realized_mix(self.res):
            t = self.res.train[mix["run"]]
            curve = t["loss_curve"]
            rows.append([mix["run"], f"{mix['alpha']:g}", t["steps"], f"{mix['mono']}/{mix['cross']}",
                         num(mix["scheduled"]), num(mix["fraction"], 3), num(curve[0][1] if curve else None),
                         num(curve[-1][1] if curve else None), num(t["wall_time_s"], 0)])
        lines = ["## Training", "",
                 "Realized batch mix: *mono/cross* are the monolingual and cross-lingual steps drawn, *scheduled* the "
                 "monolingual steps the exact schedule asks for (round(α·S)). Wall times come from the quality stage, "
                 "which shared the machine with other jobs: they are not speed measurements (see *Training speed*).", "",
                 table(["run", "α", "steps", "mono/cross", "scheduled mono", "mono fraction", "first loss", "last loss",
                        "wall s"], rows), ""]
        curves = fd.curve_summary(self.res)
        if curves:
            fig = figures.learning_curves(self.figure("learning_curves_multi_map.png"),
                                          {self.name(s): c for s, c in curves.items()},
                                          title="Held-out XQuAD-R multi mAP during training (curve subset)",
                                          ylabel="multi mAP (band: seeds' min–max)")
            rows = [[self.name(s), c["seeds"], " → ".join(num(v, 4) for v in c["mean"]),
                     f"{c['last_change']:+.4f}", "yes" if c["flat"] else "no"] for s, c in curves.items()]
            steps = next(iter(curves.values()))["steps"]
            lines += [f"Learning curves (mean over seeds at steps {', '.join(map(str, steps))}; step 0 is the zero-shot "
                      f"model). *Flat*: the last interval changes multi mAP by at most {fd.CURVE_TOLERANCE}; a curve "
                      "that is not flat means the run stopped before the strategies settled.", "",
                      table(["strategy", "seeds", "multi mAP by step", "last change", "flat"], rows), "",
                      self.link(fig, "learning curves"), ""]
        return lines

    # -- XQuAD-R -----------------------------------------------------------------------------------------
    def lareqa(self) -> list[str]:
        if "lareqa" not in self.exp["tasks"]:
            return []
        lines = ["## XQuAD-R, held-out articles (LAReQA)", ""]
        example = next((r for (m, t), r in self.res.evals.items() if t == "lareqa"), None)
        if example is None:
            return lines + ["No results yet.", ""]
        counts = example["counts"]
        lines += [f"{len(example['settings']['langs'])} languages, {sum(counts['questions'].values()):,} queries "
                  f"({len(set(example['per_query']['multi']['clusters']['question']))} questions × their translations), "
                  f"multilingual pool of {counts['multilingual_pool']:,} candidates from "
                  f"{example['settings'].get('eval_articles', '?')} held-out articles. Mean over seeds and queries "
                  "[95% CI, seeds × questions bootstrap]; these intervals hold the spread between questions, which "
                  "the paired tests below remove, so overlapping intervals do not mean equal strategies. Rank "
                  "distance: lower is better (less language bias). "
                  f"Multi Hit@1: any of the question's {len(example['settings']['langs'])} answers ranked first (R@1 "
                  f"would be capped at 1/{len(example['settings']['langs'])} there); "
                  "mono and cross R@1 have one answer per pool.", ""]
        rows = [[self.name(model), *[with_ci(self.estimate(model, "lareqa", s, m), m) for s, m in LAREQA_COLUMNS]]
                for model in self.models]
        lines += [table(["model", *[f"{s} {m}" for s, m in LAREQA_COLUMNS]], rows), ""]
        series = {self.name(m): [self._interval(m, "lareqa", s, "map") for s in ("mono", "cross", "multi")]
                  for m in self.models}
        fig = figures.interval_bars(self.figure("map_by_setting.png"), ["mono", "cross", "multi"], series,
                                    title="XQuAD-R held-out mAP (95% CI: seeds × questions)", ylabel="mAP")
        rd = {self.name(m): [self._interval(m, "lareqa", "multi", "rank_distance")] for m in self.models}
        fig_rd = figures.interval_bars(self.figure("rank_distance.png"), ["multi pool"], rd,
                                       title="Language bias: rank distance (95% CI; lower is better)",
                                       ylabel="rank distance", width_per_group=3.0)
        lines += [self.link(fig, "mAP by setting and strategy"), self.link(fig_rd, "rank distance by strategy"), ""]
        return lines

    def _interval(self, model: str, task: str, setting: str, metric: str) -> figures.Interval:
        est = self.estimate(model, task, setting, metric)
        return None if est is None else (est.mean, est.ci_low, est.ci_high)

    # -- Tatoeba, BEIR -----------------------------------------------------------------------------------
    def tatoeba(self) -> list[str]:
        if "tatoeba" not in self.exp["tasks"]:
            return []
        seen = set(self.exp.get("tatoeba_seen", []))
        example = next((r for (m, t), r in self.res.evals.items() if t == "tatoeba"), None)
        if example is None:
            return ["## Tatoeba (exploratory)", "", "No results yet.", ""]
        langs = list(example["per_language"])
        rows = []
        for model in self.models:
            results = self.res.seed_results(model, "tatoeba")
            if results is None:
                continue
            means = [sum(r["per_language"][lang]["mean"] for r in results) / len(results) for lang in langs]
            rows.append([self.name(model), *[num(v, 3) for v in means], num(sum(means) / len(means), 3)])
        header = ["model", *[f"{lang}{'' if lang in seen else ' (unseen)'}" for lang in langs], "mean"]
        return ["## Tatoeba bitext retrieval (exploratory)", "",
                f"Accuracy, mean of both directions and of the seeds ({example['per_language'][langs[0]]['pairs']} pairs "
                "per language; *(unseen)*: not a training language). Not a primary endpoint: no verdicts.", "",
                table(header, rows), ""]

    def beir(self) -> list[str]:
        if "beir" not in self.exp["tasks"]:
            return []
        split = self.exp["eval_settings"]["beir"]["split"]
        example = next((r for (m, t), r in self.res.evals.items() if t == "beir"), None)
        if example is None:
            return ["## BEIR SciFact", "", "No results yet.", ""]
        metrics = list(example["metrics"][split])
        rows = [[self.name(model), *[with_ci(self.estimate(model, "beir", split, m), m) for m in metrics]]
                for model in self.models]
        ev = self.exp["eval_settings"]
        note = (f"{example['counts']['queries']} queries, corpus of {example['counts']['documents']:,} documents; mean "
                "[95% CI over seeds × queries]; nDCG@10 is primary, the rest exploratory. The published nDCG@10 of "
                f"multilingual-e5-small on the full corpus at 512 tokens is {E5_SMALL_SCIFACT_NDCG10} (model card / MTEB)")
        if ev["beir"]["max_docs"] or ev["beir"].get("max_queries") or (ev["beir"].get("passage_max_length") or ev["passage_max_length"]) < 512:
            note += "; this run's corpus, queries or max length differ, so its absolute numbers are not comparable to it"
        return ["## BEIR SciFact", "", note + ".", "", table(["model", *metrics], rows), ""]

    # -- α sweep -----------------------------------------------------------------------------------------
    def alpha_sweep(self) -> list[str]:
        alphas = sorted(self.exp["alphas"])
        if len(alphas) < 3:
            return []
        panels, zero = {}, {}
        for endpoint in self.endpoints:
            points = [self._interval(strategy_name(a), *endpoint) for a in alphas]
            if any(p is None for p in points):
                continue
            panels[label(endpoint)] = points
            zero[label(endpoint)] = self._interval(ZERO_SHOT, *endpoint)
        if not panels:
            return []
        fig = figures.panels_vs_alpha(self.figure("metric_vs_alpha.png"), alphas, panels, zero,
                                      title="Primary endpoints against α (95% CI; grey: zero-shot and its CI)")
        return ["## Primary endpoints against α", "", self.link(fig, "primary endpoints vs alpha"), ""]

    # -- tests ---------------------------------------------------------------------------------------------
    def significance(self) -> list[str]:
        family = self.res.family
        if family is None:
            return ["## Tests", "", "The compare stage has not run.", ""]
        sens = self.exp["stats_settings"]["sensitivity_units"]
        rows = []
        for t in family["tests"]:
            eq = t.get("equivalence")
            rows.append([t["task"], f"{self.name(t['b'])} − {self.name(t['a'])}", f"{t['setting']} {t['metric']}",
                         signed_ci(t, t["metric"]), num(t["p"], 4), num(t["p_holm"], 4),
                         f"**{fd.effect_verdict(t)}**" if t["significant"] else fd.effect_verdict(t),
                         *[num(t["sensitivity"].get(u, {}).get("p"), 3) for u in sens],
                         f"{num(eq['p'], 4)} (±{eq['margin']:g})" if eq else "–",
                         (f"**{num(eq['p_holm'], 4)}**" if eq["equivalent"] else num(eq["p_holm"], 4)) if eq else "–"])
        lines = ["## Primary tests (one family)", "",
                 f"{family['family_size']} tests, Holm-Bonferroni over all of them. B − A with its 95% CI (resampling "
                 f"seeds and {self.exp['stats_settings']['unit']}s), unadjusted and family-adjusted p; the verdict uses "
                 "the adjusted p; *better* / *worse* is B's direction. "
                 + (f"Sensitivity: p with {', '.join(sens)}s as the resampling unit where there are at least "
                    f"{MIN_SENSITIVITY_CLUSTERS} of them (–: fewer, or not a clustered task). " if sens else "")
                 + "TOST: equivalence within the margin, unadjusted and Holm-adjusted over the family's "
                 f"{sum(1 for t in family['tests'] if t.get('equivalence'))} equivalence tests; equivalence is claimed "
                 "only where the adjusted p is below α (bold).", "",
                 table(["task", "B − A", "endpoint", "B − A [95% CI]", "p", "p (Holm, family)", "verdict",
                        *[f"p ({u})" for u in sens], "TOST p", "TOST p (Holm, family)"], rows), ""]
        explore = fd.exploratory_rows(self.res)
        if explore:
            rows = [[task, f"{self.name(b)} − {self.name(a)}", f"{r['setting']} {r['metric']}", signed_ci(r, r["metric"]),
                     num(r["p"], 4)] for task, a, b, r in explore]
            lines += ["### Exploratory comparisons (no verdicts)", "",
                      "Every other setting and metric of the same comparisons; unadjusted p-values, shown for "
                      "orientation only.", "", table(["task", "B − A", "quantity", "B − A [95% CI]", "p (unadjusted)"], rows), ""]
        return lines

    # -- cost ----------------------------------------------------------------------------------------------
    def inference_cost(self) -> list[str]:
        cost = self.res.cost
        command = f"python benchmarks/research/experiment.py --config {self.exp['config_file']} --stages timing"
        if cost is None:
            return ["## Inference cost", "", f"Not measured yet: `{command}` on an idle machine (the stage refuses to "
                    f"start while the 1-minute load average exceeds {self.exp.get('max_timing_load')}).", ""]
        device = f"{cost.get('device_name', cost['device'])}, {cost['torch_threads']} torch threads"
        loads = [s["load_avg"] for s in cost["samples"] if s.get("load_avg") is not None]
        load_text = f" (load average during the repeats: {min(loads):.2f}–{max(loads):.2f})" if loads else ""
        lines = ["## Inference cost on SciFact text", "",
                 f"{device}; {cost['texts']['passages']} passages at {cost['settings']['max_length']} tokens, "
                 f"{cost['texts']['queries']} queries one at a time; {cost['settings']['repeats']} interleaved "
                 f"repeats{load_text}; the load average counts the measurement's own threads.", ""]
        summary = cost["summary"]
        metrics = [("passages_per_s", "passages/s"), ("latency_p50_ms", "p50 latency (ms)"),
                   ("latency_mean_ms", "mean latency (ms)"), ("latency_p90_ms", "p90 latency (ms)"),
                   ("latency_p99_ms", "p99 latency (ms)")]
        shown = [(m, lab) for m, lab in metrics if any(m in per for p in summary.values() for per in p.values())]
        rows = [[model, path, *[f"{num(v[m]['mean'], 2)} ± {num(v[m]['std'], 2)}" if m in v else "–" for m, _ in shown]]
                for path in ("lean", "baseline") for model, v in summary.get(path, {}).items()]
        lines += [table(["model", "path", *[lab for _, lab in shown]], rows), "",
                  "Tail percentiles appear only where at least 10 latencies per repeat lie beyond them (p90 needs 100 "
                  "queries, p99 1,000).", ""]
        margin = self.exp["stats_settings"]["cost_margin"]
        eq_rows = [[t["path"], f"{t['b']} ÷ {t['a']}", t["metric"], num(t["ratio_b_over_a"], 4),
                    f"[{t['ratio_ci90'][0]:.4f}, {t['ratio_ci90'][1]:.4f}]", f"[{t['ratio_ci95'][0]:.4f}, {t['ratio_ci95'][1]:.4f}]",
                    num(t["p_tost"], 4), "**yes**" if t["equivalent"] else "not shown"] for t in fd.cost_tests(cost, margin)]
        lines += [f"Equivalence of the models' cost (paired by repeat, log-ratios, TOST within ±{100 * margin:g} %; "
                  "the 90% interval decides the TOST, the 95% one whether a difference shows):", "",
                  table(["path", "ratio", "metric", "ratio", "90% CI", "95% CI", "TOST p", "equivalent"], eq_rows), ""]
        sp_rows = [[s["model"], s["metric"], num(s["ratio_lean_over_baseline"], 3), f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]"]
                   for s in cost["speedup"]]
        lines += ["Lean path ÷ unfused baseline (same models, same texts, paired repeats; geometric mean, 95% CI):", "",
                  table(["model", "metric", "lean ÷ baseline", "95% CI"], sp_rows), ""]
        for metric, lab in (("passages_per_s", "passages/s"), ("latency_p50_ms", "p50 latency (ms)")):
            groups = list(summary.get("lean", {}))
            series = {path: [(v["mean"], v["mean"] - v["std"], v["mean"] + v["std"])
                             for v in (summary[path][m][metric] for m in groups)] for path in summary}
            fig = figures.interval_bars(self.figure(f"{metric}.png"), groups, series,
                                        title=f"{lab}, mean ± std over repeats — {device}", ylabel=lab)
            lines.append(self.link(fig, f"{lab} by model and path"))
        return lines + [""]

    def training_speed(self) -> list[str]:
        speed = self.res.speed
        if speed is None:
            return []
        rows = [[self.name(s), v["step_s"]["median"], v["tokens_per_s"]["median"], v["tokens_per_s"]["n"]]
                for s, v in speed["summary"].items()]
        rows = [[r[0], num(r[1], 2), num(r[2], 1), r[3]] for r in rows]
        loads = [x for r in speed["rounds"] for x in (r["load_avg_start"], r["load_avg_end"]) if x is not None]
        load_text = f"; load average during the rounds {min(loads):.2f}–{max(loads):.2f}" if loads else ""
        margin = self.exp["stats_settings"]["cost_margin"]
        tests = fd.speed_tests(speed, margin)
        eq_rows = [[f"{self.name(t['b'])} ÷ {self.name(t['a'])}", num(t["ratio_b_over_a"], 3),
                    f"[{t['ratio_ci90'][0]:.3f}, {t['ratio_ci90'][1]:.3f}]", num(t["p_tost"], 3),
                    "**yes**" if t["equivalent"] else "not shown"] for t in tests]
        lines = ["## Training speed (timing stage)", "",
                 f"Each strategy trained {speed['settings']['warmup_steps']} + {speed['settings']['steps']} steps per "
                 f"round, {speed['settings']['rounds']} rounds in alternating order, one strategy at a time, on "
                 f"{speed['device']} with {speed['torch_threads']} torch threads{load_text}. Medians over the "
                 "measured steps.", "",
                 table(["strategy", "step time (s)", "tokens/s", "steps"], rows), ""]
        if not tests:
            return lines + ["No equivalence test of tokens/s: it needs at least two rounds (the round, not the step, "
                            "is the independent unit).", ""]
        return lines + [
            f"Equivalence of tokens/s within ±{100 * margin:g} %, with the round as the unit (the steps of one round "
            "share the machine's state of that minute; the strategies of one round ran back to back): per round, "
            f"the mean log tokens/s of each strategy's steps; paired TOST over the {tests[0]['rounds']} rounds "
            f"({tests[0]['rounds'] - 1} degree(s) of freedom, so only large differences could show):", "",
            table(["ratio", "tokens/s ratio", "90% CI", "TOST p", "equivalent"], eq_rows), ""]

    # -- seed paper --------------------------------------------------------------------------------------
    def seed_paper(self) -> list[str]:
        if "lareqa" not in self.exp["tasks"]:
            return []
        rows = []
        for (setting, metric), paper in fd.SEED_PAPER.items():
            for base in ("x-x-mono", "x-y"):
                if base not in self.alphas or "hybrid" not in self.alphas:
                    continue
                paper_diff = round(paper["hybrid"] - paper[base], 6)
                test = fd.family_test(self.res, "lareqa", base, "hybrid", setting, metric)
                rows.append([f"{setting} {metric}", f"hybrid − {self.name(base)}",
                             f"{paper_diff:+.1f}" if metric == "rank_distance" else f"{paper_diff:+.3f}",
                             signed_ci(test, metric) if test else "–", num(test["p_holm"], 3) if test else "–",
                             fd.paper_agreement(test, paper_diff, metric)])
        return ["## Effects against the seed paper", "",
                f"Published: {fd.SEED_PAPER_SOURCE} (XLM-R, full fine-tuning; not measured here). Ours: hybrid − "
                "baseline with its 95% CI and family-adjusted p. *Agrees* requires a significant effect in the paper's "
                "direction; where the paper reports no difference, agreement requires our equivalence test (TOST) to "
                "pass; a non-significant effect is *inconclusive*, whatever its sign.", "",
                table(["quantity", "difference", "paper (XLM-R)", "ours [95% CI]", "ours Holm p", "verdict"], rows), ""]

    # -- limits ------------------------------------------------------------------------------------------
    def limits(self) -> list[str]:
        exp, ev = self.exp, self.exp["eval_settings"]
        bullets = ["One small starting model (`multilingual-e5-small`) that is already trained for retrieval, and "
                   "XQuAD-sized training data: the paper fine-tunes XLM-R / LaBSE from masked-LM weights, so effect "
                   "sizes are not expected to transfer one to one."]
        steps = [t["steps"] for t in self.res.train.values()]
        if steps and exp.get("reduced"):
            bullets.append(f"Training budget: {max(steps)} steps per run, a small fraction of the paper's training; "
                           "see the learning curves for whether the strategies had settled.")
        n_seeds = len(exp["seeds"])
        bullets.append(f"{n_seeds} seeds per strategy: the bootstrap's seed component is shrunk by (S − 1)/S = "
                       f"{(n_seeds - 1) / n_seeds:.2f}, and with few seeds the seed variance itself is poorly known.")
        if ev["lareqa"].get("articles"):
            few = ev["lareqa"]["articles"] < MIN_SENSITIVITY_CLUSTERS
            bullets.append(f"XQuAD-R: {ev['lareqa']['articles']} held-out articles"
                           + (f", too few for the article-level sensitivity test (it needs {MIN_SENSITIVITY_CLUSTERS}, "
                              "`hybridfast.eval.compare.MIN_SENSITIVITY_CLUSTERS`)" if few else "")
                           + "; rank distances are on a pool of this size, not the paper's.")
        rising = {s: c for s, c in fd.curve_summary(self.res).items() if c["flat"] is False}
        if rising:
            bullets.append("The learning curves of " + ", ".join(f"{self.name(s)} ({c['last_change']:+.4f} multi mAP "
                           "in the last interval)" for s, c in rising.items()) + " had not flattened: the trained "
                           "models are not converged, and the differences between strategies may still change with "
                           "more steps.")
        if ev["beir"]["max_docs"] or ev["beir"].get("max_queries"):
            bullets.append("SciFact: subsampled queries and corpus; the comparison between strategies (same subset for "
                           "all) holds, absolute nDCG@10 does not compare with published numbers.")
        if self.res.cost is None:
            bullets.append("Inference cost and training speed were not measured in this run (timing stage pending).")
        return ["## Limits", "", *[f"- {b}" for b in bullets], ""]

    # -- reproduction ------------------------------------------------------------------------------------
    def reproduction(self) -> list[str]:
        invocations = self.res.layout.invocations()
        lines = ["## Reproduction, hardware, versions, wall times", "", "```",
                 f"python benchmarks/research/experiment.py --config {self.exp['config_file']} --stages quality",
                 f"python benchmarks/research/experiment.py --config {self.exp['config_file']} --stages timing   # idle machine",
                 f"python benchmarks/research/report.py --results {rel(self.res.layout.root, REPO_ROOT)} "
                 f"--out {rel(self.out, REPO_ROOT)}", "```", ""]
        if invocations:
            rows = [[f"`{inv['command']}`", inv["started"], inv["finished"] or "not recorded", num(inv["wall_s"], 0),
                     inv["hardware"].get("torch_threads")] for inv in invocations]
            lines += ["Invocations of the driver for this results folder; one without a recorded finish was stopped "
                      "early (the step table lists what each step produced and when).", "",
                      table(["command", "started (UTC)", "finished (UTC)", "wall s", "torch threads"], rows), ""]
            hw, versions = invocations[-1]["hardware"], invocations[-1]["versions"]
            lines += [f"- Hardware: {hw.get('cpu')} ({hw.get('cpu_count')} logical CPUs, {hw.get('memory_gib')} GiB), "
                      f"device {hw.get('device')}" + (f", GPU {hw['gpu']}" if hw.get("gpu") else "") + f"; {hw.get('system')}.",
                      "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "."]
        done = [s for s in self.res.steps if s["status"] == "done"]
        if done:
            busy = _union_minutes([(_parse_utc(s["started"]), _parse_utc(s["finished"])) for s in done])
            loads = [s["load_avg_start"] for s in done if s.get("load_avg_start") is not None]
            lines.append(f"- Wall time: the result steps kept the machine busy for {num(busy, 1)} min (union of their "
                         f"intervals); 1-minute load average at their starts {min(loads):.1f}–{max(loads):.1f} on "
                         f"{invocations[-1]['hardware'].get('cpu_count') if invocations else '?'} CPUs (other jobs shared "
                         "the machine during the quality stages).")
            rows = [[s["step"], num(s["wall_s"], 1), s["started"], num(s.get("load_avg_start"), 1),
                     num(s.get("load_avg_end"), 1)] for s in done]
            lines += ["", "<details><summary>Every step that produced a result file</summary>", "",
                      table(["step", "wall s", "started (UTC)", "load at start", "load at end"], rows), "", "</details>", ""]
        return lines

    def render(self) -> str:
        sections = [self.header(), self.answer(), self.setup(), self.training(), self.lareqa(), self.beir(),
                    self.tatoeba(), self.alpha_sweep(), self.significance(), self.inference_cost(),
                    self.training_speed(), self.seed_paper(), self.limits(), self.reproduction()]
        return "\n".join(line for section in sections for line in section).rstrip() + "\n"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write REPORT.md and its PNG plots from a research experiment's results.")
    parser.add_argument("--results", required=True, type=Path, help="results folder, e.g. benchmarks/research/results/cpu-reduced")
    parser.add_argument("--out", required=True, type=Path, help="the report to write, e.g. benchmarks/research/REPORT.md")
    parser.add_argument("--resamples", type=int, default=2_000, help="bootstrap resamples for the per-strategy CIs")
    args = parser.parse_args(argv)
    results = fd.load_results(args.results)
    report = Report(results, args.out, n_resamples=args.resamples)
    text = report.render()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    status = f"INCOMPLETE ({len(results.missing)} steps missing)" if results.missing else "complete"
    print(f"wrote {args.out} ({status}); figures in {report.figure_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
