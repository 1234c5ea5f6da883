"""Record types every other part of hybridfast reads: parallel QA records, LAReQA pools, BEIR, bitext."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property


@dataclass(frozen=True)
class ParallelRecord:
    """One (query, positive passage) pair in one language.

    `qid` is shared by the translations of one question, so records with equal `qid` and different `lang`
    are parallel. `article` names the source article (the same key in every language); the article split
    keys on it. `group` is free for callers that batch by a group id.
    """

    qid: str
    lang: str
    query: str
    passage: str
    hard_negatives: tuple[str, ...] = ()
    group: str | None = None
    article: str | None = None


@dataclass(frozen=True)
class LareqaCandidate:
    """One answer candidate of a LAReQA pool: a sentence with its paragraph as context.

    `index` is the candidate's position in `LareqaDataset.candidates` (the multilingual pool); `qids` are
    the questions whose gold answer, in this language, this sentence is.
    """

    index: int
    lang: str
    sentence: str
    context: str
    article: str
    qids: tuple[str, ...] = ()


@dataclass(frozen=True)
class LareqaQuestion:
    """One question in one language; `qid` is shared across the languages the question exists in."""

    qid: str
    lang: str
    question: str
    article: str


@dataclass(frozen=True)
class LareqaDataset:
    """A LAReQA evaluation set (Roy et al. 2020): questions retrieve from one pool holding every language.

    `relevance[qid]` is the set of candidate indices relevant to every translation of question `qid`: the
    gold sentence (the one whose span holds the answer start) in each language where the question exists.
    XQuAD-R has 11 relevant candidates per question; MLQA-R questions exist in only some languages, so
    they have 2 to 4, and its per-language pools differ widely in size.
    """

    candidates: tuple[LareqaCandidate, ...]
    questions: tuple[LareqaQuestion, ...]
    relevance: Mapping[str, frozenset[int]] = field(repr=False)

    def __post_init__(self) -> None:
        for position, candidate in enumerate(self.candidates):
            if candidate.index != position:
                raise ValueError(f"candidate at position {position} has index {candidate.index}")
        missing = {question.qid for question in self.questions} - set(self.relevance)
        if missing:
            raise ValueError(f"questions without relevance entries: {sorted(missing)[:5]}")

    @cached_property
    def languages(self) -> tuple[str, ...]:
        """Languages with candidates or questions, sorted."""
        return tuple(sorted({c.lang for c in self.candidates} | {q.lang for q in self.questions}))

    def candidates_in(self, lang: str) -> tuple[LareqaCandidate, ...]:
        """The candidates in one language, in pool order."""
        return tuple(candidate for candidate in self.candidates if candidate.lang == lang)

    def questions_in(self, lang: str) -> tuple[LareqaQuestion, ...]:
        """The questions asked in one language."""
        return tuple(question for question in self.questions if question.lang == lang)

    def relevant(self, qid: str) -> frozenset[int]:
        """Indices of the candidates relevant to question `qid` (its gold sentence in each language)."""
        return self.relevance[qid]

    def gold(self, qid: str, lang: str) -> LareqaCandidate:
        """The gold candidate of question `qid` in language `lang`; KeyError if it is not asked there."""
        for index in self.relevance[qid]:
            if self.candidates[index].lang == lang:
                return self.candidates[index]
        raise KeyError(f"question {qid!r} has no gold candidate in {lang!r}")


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR dataset for one split: `corpus[doc_id] = (title, text)`, `queries[qid] = text`,
    `qrels[qid][doc_id] = relevance`. `queries` holds only the queries judged in this split (BEIR's
    convention)."""

    corpus: Mapping[str, tuple[str, str]] = field(repr=False)
    queries: Mapping[str, str] = field(repr=False)
    qrels: Mapping[str, Mapping[str, int]] = field(repr=False)
    split: str = "test"


@dataclass(frozen=True)
class BitextPair:
    """Line i of a Tatoeba pair: a sentence in `lang` (ISO 639-3) and its English translation."""

    lang: str
    source: str
    english: str
