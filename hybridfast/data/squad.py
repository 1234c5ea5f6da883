"""SQuAD-format loaders: XQuAD (parallel QA records) and LAReQA / XQuAD-R / MLQA-R (answer pools).

Article keys. The article split must put an article and all its translations on the same side, so each
article gets one key for all languages: its English title, reached through the question ids it shares
with the English file (XQuAD and MLQA ids are shared across languages); without an English version, the
title in the first language (sorted) that has one; with no shared question at all, its own title. XQuAD
and XQuAD-R carry the same articles and ids, so both loaders give the same key to the same article.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridfast.data.files import MissingDataError, find_data_file, parse_json, read_text, strip_gz
from hybridfast.data.languages import check_language, describe_languages, match_language
from hybridfast.data.records import LareqaCandidate, LareqaDataset, LareqaQuestion, ParallelRecord
from hybridfast.errors import DataFormatError


@dataclass(frozen=True)
class SquadQuestion:
    """A question of a SQuAD paragraph; `answer_start` is the first answer's character offset."""

    qid: str
    question: str
    answer_start: int | None


@dataclass(frozen=True)
class SquadParagraph:
    """A SQuAD paragraph; `sentences` and `sentence_breaks` are present in LAReQA files only."""

    context: str
    questions: tuple[SquadQuestion, ...]
    sentences: tuple[str, ...] | None = None
    sentence_breaks: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class SquadArticle:
    """A SQuAD article: a title and its paragraphs."""

    title: str
    paragraphs: tuple[SquadParagraph, ...]


class _SquadReader:
    """Validates one parsed SQuAD file, locating faults by JSON path and, where it can, by line."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.text = text

    def fail(self, where: str, message: str, needle: str | None = None) -> DataFormatError:
        """An error at JSON path `where`, on the first line holding `needle` (a question id) if given."""
        position = self.text.find(f'"{needle}"') if needle else -1
        line = self.text.count("\n", 0, position) + 1 if position >= 0 else None
        return DataFormatError(self.path, line, f"{where}: {message}")

    def field(
        self,
        value: dict[str, Any],
        key: str,
        kind: type | tuple[type, ...],
        where: str,
        needle: str | None = None,
    ) -> Any:
        if key not in value:
            raise self.fail(where, f"missing field {key!r}", needle)
        if not isinstance(value[key], kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(
                where, f"field {key!r} should be {expected}, got {type(value[key]).__name__}", needle
            )
        return value[key]

    def articles(self, document: Any) -> list[SquadArticle]:
        if not isinstance(document, dict):
            raise self.fail("top level", "expected a JSON object with a 'data' list (SQuAD v1.1)")
        articles = []
        seen: set[str] = set()
        for a, article in enumerate(self.field(document, "data", list, "top level")):
            where = f"data[{a}]"
            if not isinstance(article, dict):
                raise self.fail(where, "expected an article object")
            title = self.field(article, "title", str, where).strip()
            if not title:
                raise self.fail(where, "empty article title")
            paragraphs = tuple(
                self.paragraph(paragraph, f"{where}.paragraphs[{p}]", seen)
                for p, paragraph in enumerate(self.field(article, "paragraphs", list, where))
            )
            articles.append(SquadArticle(title, paragraphs))
        return articles

    def paragraph(self, paragraph: Any, where: str, seen: set[str]) -> SquadParagraph:
        if not isinstance(paragraph, dict):
            raise self.fail(where, "expected a paragraph object")
        questions = tuple(
            self.question(qa, f"{where}.qas[{q}]", seen)
            for q, qa in enumerate(self.field(paragraph, "qas", list, where))
        )
        needle = questions[0].qid if questions else None
        context = self.field(paragraph, "context", str, where, needle)
        if not context.strip():
            raise self.fail(where, "empty passage (context)", needle)
        if "sentences" not in paragraph and "sentence_breaks" not in paragraph:
            return SquadParagraph(context, questions)
        sentences = self.field(paragraph, "sentences", list, where, needle)
        breaks = self.field(paragraph, "sentence_breaks", list, where, needle)
        if len(sentences) != len(breaks):
            raise self.fail(where, f"{len(sentences)} sentences but {len(breaks)} sentence_breaks", needle)
        spans = []
        for s, (sentence, span) in enumerate(zip(sentences, breaks, strict=True)):
            if not isinstance(sentence, str) or not sentence.strip():
                raise self.fail(f"{where}.sentences[{s}]", "empty candidate sentence", needle)
            if not (isinstance(span, list) and len(span) == 2 and all(isinstance(i, int) for i in span)):
                raise self.fail(
                    f"{where}.sentence_breaks[{s}]", f"expected [start, end], got {span!r}", needle
                )
            spans.append((span[0], span[1]))
        return SquadParagraph(context, questions, tuple(sentences), tuple(spans))

    def question(self, qa: Any, where: str, seen: set[str]) -> SquadQuestion:
        if not isinstance(qa, dict):
            raise self.fail(where, "expected a question object")
        qid = str(self.field(qa, "id", (str, int), where)).strip()
        if not qid:
            raise self.fail(where, "empty question id")
        where = f"{where} (id {qid})"
        if qid in seen:
            raise self.fail(where, "duplicate question id", qid)
        seen.add(qid)
        question = self.field(qa, "question", str, where, qid)
        if not question.strip():
            raise self.fail(where, "empty query (question)", qid)
        answers = qa.get("answers") or []
        answer_start = None
        if answers:
            if not isinstance(answers[0], dict) or not isinstance(answers[0].get("answer_start"), int):
                raise self.fail(where, "answers[0] has no integer 'answer_start'", qid)
            answer_start = answers[0]["answer_start"]
        return SquadQuestion(qid, question, answer_start)


def read_squad_file(path: Path) -> list[SquadArticle]:
    """Parse and validate one SQuAD v1.1 JSON file (`.gz` or plain)."""
    text = read_text(path)
    return _SquadReader(path, text).articles(parse_json(text, path))


def _language_files(directory: Path, prefix: str) -> dict[str, Path]:
    """`{lang: path}` for files named `{prefix}{lang}.json[.gz]`; the plain file wins over the `.gz`."""
    if not directory.is_dir():
        raise MissingDataError(f"{directory}: folder not found")
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        name = strip_gz(path.name)
        if not (path.is_file() and name.startswith(prefix) and name.endswith(".json")):
            continue
        lang = name[len(prefix) : -len(".json")]
        if not lang or "." in lang:
            continue
        check_language(lang, path, None)
        files[lang] = find_data_file(directory, name)
    return files


def xquad_files(directory: Path) -> dict[str, Path]:
    """The XQuAD files of a folder, `{lang: path}` for each `xquad.{lang}.json[.gz]`."""
    return _language_files(directory, "xquad.")


def lareqa_files(directory: Path) -> dict[str, Path]:
    """The LAReQA files of a folder, `{lang: path}` for each `{lang}.json[.gz]`."""
    return _language_files(directory, "")


def _select(
    files: dict[str, Path], directory: Path, pattern: str, languages: list[str] | None
) -> dict[str, Path]:
    if languages is None:
        if not files:
            raise MissingDataError(f"{directory}: no {pattern} files found")
        return files
    selected: dict[str, Path] = {}
    for code in languages:
        lang = match_language(code, files)
        if lang is None:
            raise MissingDataError(
                f"{directory / pattern.replace('{lang}', code)}: file not found (also tried .gz); the folder has "
                f"{describe_languages(files)}"
            )
        selected[lang] = files[lang]
    return selected


def article_keys(articles_by_lang: dict[str, list[SquadArticle]]) -> dict[str, list[str]]:
    """One key per article, shared by its translations (see the module docstring): `{lang: [key, ...]}`."""
    key_of_qid: dict[str, str] = {}
    keys: dict[str, list[str]] = {}
    for lang in sorted(articles_by_lang, key=lambda code: (code != "en", code)):
        lang_keys = []
        for article in articles_by_lang[lang]:
            qids = [q.qid for paragraph in article.paragraphs for q in paragraph.questions]
            key = next((key_of_qid[qid] for qid in qids if qid in key_of_qid), article.title)
            for qid in qids:
                key_of_qid.setdefault(qid, key)
            lang_keys.append(key)
        keys[lang] = lang_keys
    return keys


def _read_all(files: dict[str, Path]) -> tuple[dict[str, list[SquadArticle]], dict[str, list[str]]]:
    articles = {lang: read_squad_file(path) for lang, path in files.items()}
    return articles, article_keys(articles)


def load_xquad(directory: Path, languages: list[str] | None = None) -> list[ParallelRecord]:
    """XQuAD → one `ParallelRecord` per question and language (passage = the question's paragraph).

    Reads `xquad.{lang}.json[.gz]` for `languages` (default: every such file in `directory`). Records come
    sorted by language, then in file order; `article` is the cross-lingual article key.
    """
    files = _select(xquad_files(directory), directory, "xquad.{lang}.json", languages)
    articles, keys = _read_all(files)
    records = []
    for lang in sorted(files):
        for article, key in zip(articles[lang], keys[lang], strict=True):
            for paragraph in article.paragraphs:
                records.extend(
                    ParallelRecord(
                        qid=q.qid, lang=lang, query=q.question, passage=paragraph.context, article=key
                    )
                    for q in paragraph.questions
                )
    return records


def _gold_sentence(paragraph: SquadParagraph, question: SquadQuestion, path: Path, where: str) -> int:
    """Index of the sentence whose `[start, end)` span holds the answer start.

    An answer starting in the gap between two sentences belongs to the sentence after the gap.
    """
    if question.answer_start is None:
        raise DataFormatError(
            path, None, f"{where} (id {question.qid}): no answer to locate the gold sentence"
        )
    assert paragraph.sentence_breaks is not None
    for index, (start, end) in enumerate(paragraph.sentence_breaks):
        if start <= question.answer_start < end:
            return index
    for index, (start, _end) in enumerate(paragraph.sentence_breaks):
        if start > question.answer_start:
            return index
    raise DataFormatError(
        path,
        None,
        f"{where} (id {question.qid}): answer start {question.answer_start} lies past the last sentence",
    )


def load_lareqa(directory: Path, languages: list[str] | None = None) -> LareqaDataset:
    """A LAReQA folder (`{lang}.json[.gz]`, SQuAD plus `sentences`/`sentence_breaks`) → `LareqaDataset`.

    The pool holds every sentence of every paragraph in every language (languages sorted, then file
    order); each question's gold candidate in a language is the sentence holding its answer start. Works
    for the 11-way parallel XQuAD-R and for MLQA-R, where a question exists in only some languages.
    """
    files = _select(lareqa_files(directory), directory, "{lang}.json", languages)
    articles, keys = _read_all(files)
    candidates: list[LareqaCandidate] = []
    questions: list[LareqaQuestion] = []
    relevance: dict[str, set[int]] = defaultdict(set)
    for lang in sorted(files):
        path = files[lang]
        for a, (article, key) in enumerate(zip(articles[lang], keys[lang], strict=True)):
            for p, paragraph in enumerate(article.paragraphs):
                where = f"data[{a}].paragraphs[{p}]"
                if paragraph.sentences is None:
                    raise DataFormatError(
                        path, None, f"{where}: no 'sentences'/'sentence_breaks' (not a LAReQA file)"
                    )
                gold_qids: dict[int, list[str]] = defaultdict(list)
                for question in paragraph.questions:
                    gold_qids[_gold_sentence(paragraph, question, path, where)].append(question.qid)
                    questions.append(LareqaQuestion(question.qid, lang, question.question, key))
                for s, sentence in enumerate(paragraph.sentences):
                    index = len(candidates)
                    candidates.append(
                        LareqaCandidate(index, lang, sentence, paragraph.context, key, tuple(gold_qids[s]))
                    )
                    for qid in gold_qids[s]:
                        relevance[qid].add(index)
    return LareqaDataset(
        tuple(candidates), tuple(questions), {qid: frozenset(ids) for qid, ids in relevance.items()}
    )
