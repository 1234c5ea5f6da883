"""Loaders on small files the tests write: XQuAD, LAReQA (incl. the MLQA-R shape), BEIR, Tatoeba, JSONL."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hybridfast.data import (
    DataWarning,
    MissingDataError,
    ParallelRecord,
    UnknownLanguageError,
    find_data_file,
    load_beir,
    load_lareqa,
    load_parallel_jsonl,
    load_tatoeba,
    load_xquad,
    resolve_data_root,
)
from hybridfast.errors import DataFormatError, HybridfastError

EN = [
    ("Warsaw", [("Warsaw is big. It has a river. The river is the Vistula.", [("q1", "Is Warsaw big?", 3)])]),
    ("Normans", [("Normans came. They stayed.", [("q2", "Who came?", 0), ("q3", "Did they stay?", 14)])]),
]
DE = [
    ("Warschau", [("Warschau ist groß. Es hat einen Fluss.", [("q1", "Ist Warschau groß?", 3)])]),
    ("Normannen", [("Normannen kamen. Sie blieben.", [("q2", "Wer kam?", 0), ("q3", "Blieben sie?", 17)])]),
]


# --- data root and files ---------------------------------------------------------------------------------


def test_resolve_data_root_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HYBRIDFAST_DATA", str(tmp_path / "env"))
    assert resolve_data_root(str(tmp_path / "flag")) == tmp_path / "flag"
    assert resolve_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("HYBRIDFAST_DATA")
    assert resolve_data_root(None) == Path("data")


def test_find_data_file_prefers_plain_then_gz(tmp_path: Path, text_writer) -> None:
    text_writer(tmp_path / "a.json.gz", "{}")
    assert find_data_file(tmp_path, "a.json") == tmp_path / "a.json.gz"
    text_writer(tmp_path / "a.json", "{}")
    assert find_data_file(tmp_path, "a.json") == tmp_path / "a.json"
    with pytest.raises(MissingDataError, match=r"b\.json: file not found"):
        find_data_file(tmp_path, "b.json")


# --- XQuAD -------------------------------------------------------------------------------------------------


def test_xquad_records_gz_and_plain_alike(tmp_path: Path, squad_writer) -> None:
    squad_writer(tmp_path / "xquad.en.json.gz", EN)
    squad_writer(tmp_path / "xquad.de.json", DE)
    records = load_xquad(tmp_path)
    assert [(r.lang, r.qid) for r in records] == [("de", "q1"), ("de", "q2"), ("de", "q3")] + [
        ("en", "q1"),
        ("en", "q2"),
        ("en", "q3"),
    ]
    assert records[3] == ParallelRecord(
        qid="q1",
        lang="en",
        query="Is Warsaw big?",
        passage="Warsaw is big. It has a river. The river is the Vistula.",
        article="Warsaw",
    )
    # German titles differ; the article key is the English title reached through the shared question ids.
    assert {r.article for r in records if r.lang == "de"} == {"Warsaw", "Normans"}
    assert load_xquad(tmp_path, ["de"])[0].article == "Warschau"


def test_xquad_missing_language_file(tmp_path: Path, squad_writer) -> None:
    squad_writer(tmp_path / "xquad.en.json", EN)
    with pytest.raises(MissingDataError, match=r"xquad\.de\.json: file not found"):
        load_xquad(tmp_path, ["de"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="no xquad"):
        load_xquad(tmp_path / "empty")


def test_xquad_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="folder not found"):
        load_xquad(tmp_path / "nope")


def test_xquad_malformed_json_names_line(tmp_path: Path, text_writer) -> None:
    path = text_writer(tmp_path / "xquad.en.json", '{"data": [\n  {"title": "x",\n   "paragraphs": [,]}\n]}')
    with pytest.raises(DataFormatError) as caught:
        load_xquad(tmp_path)
    assert caught.value.line == 3
    assert str(caught.value).startswith(f"{path}:3: malformed JSON")


def test_xquad_not_gzip(tmp_path: Path) -> None:
    (tmp_path / "xquad.en.json.gz").write_text("not gzip")
    with pytest.raises(DataFormatError, match="cannot read file"):
        load_xquad(tmp_path)


def test_xquad_empty_question_names_line_and_id(tmp_path: Path, squad_writer) -> None:
    path = squad_writer(tmp_path / "xquad.en.json", [("T", [("Some context.", [("q9", "  ", 0)])])])
    with pytest.raises(DataFormatError, match=r"qas\[0\] \(id q9\): empty query") as caught:
        load_xquad(tmp_path)
    assert caught.value.line is not None
    assert '"q9"' in path.read_text().split("\n")[caught.value.line - 1]


def test_xquad_empty_passage(tmp_path: Path, squad_writer) -> None:
    squad_writer(tmp_path / "xquad.en.json", [("T", [("", [("q9", "Why?", 0)])])])
    with pytest.raises(DataFormatError, match=r"paragraphs\[0\]: empty passage"):
        load_xquad(tmp_path)


def test_xquad_duplicate_question_id(tmp_path: Path, squad_writer) -> None:
    squad_writer(tmp_path / "xquad.en.json", [("T", [("A. B.", [("q1", "a?", 0), ("q1", "b?", 3)])])])
    with pytest.raises(DataFormatError, match="duplicate question id"):
        load_xquad(tmp_path)


def test_xquad_missing_field(tmp_path: Path, text_writer) -> None:
    text_writer(tmp_path / "xquad.en.json", '{"data": [{"paragraphs": []}]}')
    with pytest.raises(DataFormatError, match=r"data\[0\]: missing field 'title'"):
        load_xquad(tmp_path)


def test_xquad_unknown_language_in_file_name(tmp_path: Path, squad_writer) -> None:
    path = squad_writer(tmp_path / "xquad.english.json", EN)
    with pytest.raises(UnknownLanguageError, match="unknown language code 'english'") as caught:
        load_xquad(tmp_path)
    assert caught.value.path == path


# --- LAReQA ------------------------------------------------------------------------------------------------


def test_lareqa_xquad_r_shape(tmp_path: Path, squad_writer) -> None:
    squad_writer(tmp_path / "en.json.gz", EN, with_sentences=True)
    squad_writer(tmp_path / "de.json", DE, with_sentences=True)
    pool = load_lareqa(tmp_path)
    assert pool.languages == ("de", "en")
    assert [c.sentence for c in pool.candidates_in("de")] == [
        "Warschau ist groß.",
        "Es hat einen Fluss.",
        "Normannen kamen.",
        "Sie blieben.",
    ]
    assert [c.index for c in pool.candidates] == list(range(4 + 5))
    assert pool.gold("q3", "de").sentence == "Sie blieben."
    assert pool.gold("q3", "en").sentence == "They stayed."
    assert pool.gold("q1", "en").context == EN[0][1][0][0]
    assert {pool.candidates[i].lang for i in pool.relevant("q2")} == {"de", "en"}
    assert pool.gold("q2", "en").qids == ("q2",)
    assert {q.article for q in pool.questions} == {"Warsaw", "Normans"}
    assert len(pool.questions_in("en")) == 3


def test_lareqa_mlqa_r_shape(tmp_path: Path, squad_writer) -> None:
    """Questions in only some languages, 2-4 relevant candidates, pools of very different sizes."""
    en_context = "Alpha one. Alpha two. Alpha three. Alpha four. Alpha five."
    squad_writer(
        tmp_path / "en.json",
        [
            ("Alpha", [(en_context, [("m1", "one?", 0), ("m2", "two?", 11), ("m3", "five?", 48)])]),
            ("Beta", [("Beta one. Beta two.", [("m4", "beta?", 10)])]),
        ],
        with_sentences=True,
    )
    squad_writer(
        tmp_path / "de.json",
        [("Alpha_de", [("Eins. Zwei.", [("m1", "eins?", 0), ("m2", "zwei?", 6)])])],
        True,
    )
    squad_writer(
        tmp_path / "es.json", [("Alfa", [("Uno y dos.", [("m1", "uno?", 0), ("m2", "dos?", 6)])])], True
    )
    squad_writer(tmp_path / "ar.json", [("Alef", [("Wahid.", [("m1", "wahid?", 0)])])], True)
    squad_writer(
        tmp_path / "vi.json", [("Beta_vi", [("Mot. Hai.", [("m4", "hai?", 5), ("m3", "nam?", 0)])])], True
    )
    pool = load_lareqa(tmp_path)
    sizes = {lang: len(pool.candidates_in(lang)) for lang in pool.languages}
    assert sizes == {"ar": 1, "de": 2, "en": 7, "es": 1, "vi": 2}
    relevant_langs = {
        qid: sorted(pool.candidates[i].lang for i in pool.relevant(qid)) for qid in pool.relevance
    }
    assert relevant_langs == {
        "m1": ["ar", "de", "en", "es"],
        "m2": ["de", "en", "es"],
        "m3": ["en", "vi"],
        "m4": ["en", "vi"],
    }
    # One Spanish sentence answers two questions.
    assert pool.gold("m1", "es").index == pool.gold("m2", "es").index
    assert pool.gold("m1", "es").qids == ("m1", "m2")
    assert pool.gold("m3", "vi").sentence == "Mot."
    with pytest.raises(KeyError):
        pool.gold("m3", "de")
    # Every language's article key is the English title, so the split can hold the whole article out.
    assert {(q.lang, q.article) for q in pool.questions if q.qid == "m1"} == {
        ("ar", "Alpha"),
        ("de", "Alpha"),
        ("en", "Alpha"),
        ("es", "Alpha"),
    }
    assert {q.article for q in pool.questions if q.qid in ("m3", "m4")} == {"Alpha", "Beta"}
    assert pool.gold("m4", "vi").article == "Beta"


def test_lareqa_answer_in_gap_goes_to_next_sentence(tmp_path: Path, text_writer) -> None:
    paragraph = {
        "context": "One.  Two.",
        "qas": [{"id": "g", "question": "two?", "answers": [{"text": " Two", "answer_start": 4}]}],
        "sentences": ["One.", "Two."],
        "sentence_breaks": [[0, 4], [6, 10]],
    }
    text_writer(tmp_path / "en.json", json.dumps({"data": [{"title": "T", "paragraphs": [paragraph]}]}))
    assert load_lareqa(tmp_path).gold("g", "en").sentence == "Two."


def test_lareqa_rejects_plain_squad(tmp_path: Path, squad_writer) -> None:
    squad_writer(tmp_path / "en.json", EN)
    with pytest.raises(DataFormatError, match="not a LAReQA file"):
        load_lareqa(tmp_path)


def test_lareqa_answer_past_last_sentence(tmp_path: Path, squad_writer) -> None:
    squad_writer(tmp_path / "en.json", [("T", [("One. Two.", [("z", "?", 99)])])], with_sentences=True)
    with pytest.raises(DataFormatError, match="lies past the last sentence"):
        load_lareqa(tmp_path)


def test_lareqa_unknown_language_file(tmp_path: Path, squad_writer) -> None:
    squad_writer(tmp_path / "xx.json", EN, with_sentences=True)
    with pytest.raises(UnknownLanguageError, match="'xx'"):
        load_lareqa(tmp_path)


# --- BEIR --------------------------------------------------------------------------------------------------


def _beir(tmp_path: Path, text_writer, jsonl_writer, qrels: str) -> Path:
    jsonl_writer(
        tmp_path / "corpus.jsonl.gz",
        [
            {"_id": "d1", "title": "T1", "text": "one"},
            {"_id": "d2", "title": "", "text": "two"},
            {"_id": 3, "text": "x"},
        ],
    )
    jsonl_writer(
        tmp_path / "queries.jsonl", [{"_id": "q1", "text": "first?"}, {"_id": "q2", "text": "second?"}]
    )
    text_writer(tmp_path / "qrels" / "test.tsv", qrels)
    return tmp_path


def test_beir_loads_split(tmp_path: Path, text_writer, jsonl_writer) -> None:
    root = _beir(tmp_path, text_writer, jsonl_writer, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\t3\t2\n")
    dataset = load_beir(root)
    assert dataset.corpus == {"d1": ("T1", "one"), "d2": ("", "two"), "3": ("", "x")}
    assert dataset.queries == {"q1": "first?"}
    assert dataset.qrels == {"q1": {"d1": 1, "3": 2}}
    assert dataset.split == "test"


def test_beir_unknown_documents_are_a_counted_warning(tmp_path: Path, text_writer, jsonl_writer) -> None:
    rows = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\tgone\t1\nq2\tgone2\t1\nq9\td2\t1\n"
    root = _beir(tmp_path, text_writer, jsonl_writer, rows)
    with pytest.warns(DataWarning) as caught:
        dataset = load_beir(root)
    messages = [str(w.message) for w in caught]
    assert any(
        "skipped 2 qrels rows naming documents not in the corpus (first at line 3)" in m for m in messages
    )
    assert any(
        "skipped 1 qrels rows naming queries not in queries.jsonl (first at line 5)" in m for m in messages
    )
    assert dataset.qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize(
    ("qrels", "message"),
    [
        ("query-id\tcorpus-id\tscore\nq1\td1\n", r"test\.tsv:2: expected 3 tab-separated fields"),
        ("query-id\tcorpus-id\tscore\nq1\td1\thigh\n", r"test\.tsv:2: score 'high' is not an integer"),
    ],
)
def test_beir_bad_qrels_rows(tmp_path: Path, text_writer, jsonl_writer, qrels: str, message: str) -> None:
    with pytest.raises(DataFormatError, match=message):
        load_beir(_beir(tmp_path, text_writer, jsonl_writer, qrels))


def test_beir_bad_corpus_and_queries(tmp_path: Path, text_writer, jsonl_writer) -> None:
    root = _beir(tmp_path, text_writer, jsonl_writer, "query-id\tcorpus-id\tscore\n")
    jsonl_writer(root / "queries.jsonl", [{"_id": "q1", "text": "ok"}, {"_id": "q2", "text": " "}])
    with pytest.raises(DataFormatError, match=r"queries\.jsonl:2: query 'q2' is empty"):
        load_beir(root)
    jsonl_writer(root / "corpus.jsonl.gz", [{"_id": "d1", "text": "x"}, '{"_id": "d2", "text": '])
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl\.gz:2: malformed JSON"):
        load_beir(root)
    jsonl_writer(root / "corpus.jsonl.gz", [{"_id": "d1", "title": "", "text": ""}])
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl\.gz:1: document 'd1' has an empty passage"):
        load_beir(root)
    jsonl_writer(root / "corpus.jsonl.gz", [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}])
    with pytest.raises(DataFormatError, match=r":2: duplicate '_id' 'd1'"):
        load_beir(root)


def test_beir_missing_files(tmp_path: Path, text_writer, jsonl_writer) -> None:
    root = _beir(tmp_path, text_writer, jsonl_writer, "query-id\tcorpus-id\tscore\n")
    with pytest.raises(MissingDataError, match=r"qrels/dev\.tsv: file not found"):
        load_beir(root, "dev")
    (root / "queries.jsonl").unlink()
    with pytest.raises(MissingDataError, match=r"queries\.jsonl: file not found"):
        load_beir(root)


# --- Tatoeba -----------------------------------------------------------------------------------------------


def test_tatoeba_pairs_from_v1_folder(tmp_path: Path, text_writer) -> None:
    text_writer(tmp_path / "v1" / "tatoeba.deu-eng.deu.gz", "Hallo.\nTschüss\u2028ja.\n")
    text_writer(tmp_path / "v1" / "tatoeba.deu-eng.eng.gz", "Hello.\nBye, yes.\n")
    text_writer(tmp_path / "v1" / "tatoeba.fra-eng.fra", "Oui.\r\n")
    text_writer(tmp_path / "v1" / "tatoeba.fra-eng.eng", "Yes.\n")
    pairs = load_tatoeba(tmp_path)
    assert sorted(pairs) == ["deu", "fra"]
    assert [(p.source, p.english) for p in pairs["deu"]] == [
        ("Hallo.", "Hello."),
        ("Tschüss\u2028ja.", "Bye, yes."),
    ]
    assert pairs["fra"][0].lang == "fra" and pairs["fra"][0].source == "Oui."
    assert list(load_tatoeba(tmp_path / "v1", ["fra"])) == ["fra"]


def test_tatoeba_mismatched_line_counts(tmp_path: Path, text_writer) -> None:
    text_writer(tmp_path / "tatoeba.deu-eng.deu", "a\nb\nc\n")
    text_writer(tmp_path / "tatoeba.deu-eng.eng", "a\nb\n")
    with pytest.raises(
        DataFormatError, match=r"eng:3: line counts differ: tatoeba\.deu-eng\.deu has 3 lines"
    ):
        load_tatoeba(tmp_path)


def test_tatoeba_bad_inputs(tmp_path: Path, text_writer) -> None:
    text_writer(tmp_path / "tatoeba.deu-eng.deu", "a\n\nc\n")
    text_writer(tmp_path / "tatoeba.deu-eng.eng", "a\nb\nc\n")
    with pytest.raises(DataFormatError, match=r"deu-eng\.deu:2: empty sentence"):
        load_tatoeba(tmp_path)
    with pytest.raises(MissingDataError, match=r"tatoeba\.fra-eng\.fra: file not found"):
        load_tatoeba(tmp_path, ["fra"])
    text_writer(tmp_path / "tatoeba.qqq-eng.qqq", "a\n")
    with pytest.raises(UnknownLanguageError, match="'qqq'"):
        load_tatoeba(tmp_path)
    (tmp_path / "other").mkdir()
    with pytest.raises(MissingDataError, match="no tatoeba"):
        load_tatoeba(tmp_path / "other")


# --- generic JSONL -----------------------------------------------------------------------------------------


def test_parallel_jsonl_roundtrip(tmp_path: Path, jsonl_writer) -> None:
    path = jsonl_writer(
        tmp_path / "mine.jsonl.gz",
        [
            {
                "qid": "a",
                "lang": "en",
                "query": "q?",
                "passage": "p",
                "hard_negatives": ["n1", "n2"],
                "group": "g",
            },
            "",
            {"qid": 7, "lang": "de", "query": "f?", "passage": "p2", "article": "Art"},
        ],
    )
    assert load_parallel_jsonl(path) == [
        ParallelRecord("a", "en", "q?", "p", ("n1", "n2"), "g", None),
        ParallelRecord("7", "de", "f?", "p2", (), None, "Art"),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ('{"qid": "a", "lang": "en", ', r":2: malformed JSON"),
        ("[1, 2]", r":2: expected a JSON object, got list"),
        ({"qid": "b", "lang": "en", "query": " ", "passage": "p"}, r":2: empty 'query'"),
        ({"qid": "b", "lang": "en", "query": "q", "passage": ""}, r":2: empty 'passage'"),
        ({"qid": "b", "lang": "en", "query": "q"}, r":2: missing field 'passage'"),
        (
            {"qid": "b", "lang": "xx", "query": "q", "passage": "p"},
            r":2: unknown language code 'xx'; use an ISO 639-1 code such as 'de', an ISO 639-3 code such as 'deu'",
        ),
        (
            {"qid": "b", "lang": "en", "query": "q", "passage": "p", "hard_negatives": "n"},
            r":2: 'hard_negatives'",
        ),
        (
            {"qid": "b", "lang": "en", "query": "q", "passage": "p", "extra": 1},
            r":2: unknown fields \['extra'\]",
        ),
        ({"qid": "b", "lang": "en", "query": 5, "passage": "p"}, r":2: field 'query' should be a string"),
        (
            {"qid": "a", "lang": "en", "query": "q", "passage": "p"},
            r":2: duplicate qid 'a' in 'en' \(first at line 1\)",
        ),
    ],
)
def test_parallel_jsonl_bad_lines(tmp_path: Path, jsonl_writer, row: object, message: str) -> None:
    path = jsonl_writer(
        tmp_path / "bad.jsonl", [{"qid": "a", "lang": "en", "query": "q", "passage": "p"}, row]
    )
    with pytest.raises(DataFormatError, match=rf"^{path}{message}"):
        load_parallel_jsonl(path)


def test_parallel_jsonl_missing_and_empty(tmp_path: Path) -> None:
    with pytest.raises(MissingDataError):
        load_parallel_jsonl(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataFormatError, match="no records"):
        load_parallel_jsonl(tmp_path / "empty.jsonl")


def test_errors_are_hybridfast_errors() -> None:
    assert issubclass(MissingDataError, HybridfastError)
    assert issubclass(UnknownLanguageError, DataFormatError)


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    with gzip.open(tmp_path / "bad.jsonl.gz", "wb") as handle:
        handle.write(b'{"qid": "a", "lang": "en", "query": "q", "passage": "p"}\n\xff\xfe\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl\.gz:2: not valid UTF-8"):
        load_parallel_jsonl(tmp_path / "bad.jsonl.gz")
