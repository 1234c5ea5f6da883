"""The language table: ISO 639-1 ↔ ISO 639-3 ↔ names, matching a user's code to a dataset's, and the loaders
that use it (XQuAD, Tatoeba, JSONL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridfast.data import MissingDataError, load_parallel_jsonl, load_tatoeba, load_xquad
from hybridfast.data.files import strip_gz
from hybridfast.data.languages import (
    ISO_639_1,
    LANGUAGE_TABLE,
    TATOEBA_LANGUAGES,
    Language,
    UnknownLanguageError,
    _index,
    canonical_language,
    find_language,
    match_language,
)
from hybridfast.errors import DataFormatError


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("de", "de"), ("deu", "de"), ("German", "de"), ("GERMAN", "de"), (" DE ", "de"), ("cmn", "zh"), ("zho", "zh"),
     ("Mandarin", "zh"), ("pes", "fa"), ("Farsi", "fa"), ("zsm", "ms"), ("swh", "sw"), ("lvs", "lv"), ("gsw", "gsw"),
     ("Swiss German", "gsw"), ("eng", "en"), ("nob", "nb"), ("yue", "yue")],
)
def test_canonical_language(given: str, canonical: str) -> None:
    assert canonical_language(given) == canonical


def test_unknown_language_names_the_accepted_forms_and_the_place() -> None:
    with pytest.raises(UnknownLanguageError) as caught:
        canonical_language("xx")
    assert str(caught.value) == ("unknown language code 'xx'; use an ISO 639-1 code such as 'de', an ISO 639-3 "
                                 "code such as 'deu', or an English name such as 'German'")
    with pytest.raises(DataFormatError, match=r"^mine\.jsonl:7: unknown language code 'deutsch'"):
        canonical_language("deutsch", "mine.jsonl", 7)


def test_every_iso_639_1_code_has_an_iso_639_3_code_and_a_name() -> None:
    assert len(ISO_639_1) == 184
    for code in ISO_639_1:
        language = find_language(code)
        assert language is not None and language.code == code
        assert len(language.codes[1]) == 3 and language.name
        assert canonical_language(language.codes[1]) == code
        assert canonical_language(language.name) == code


def test_the_table_refuses_a_key_shared_by_two_languages() -> None:
    with pytest.raises(AssertionError, match="'deu' names both German and Other"):
        _index([Language(("de", "deu"), ("German",)), Language(("deu",), ("Other",))])
    assert len({language.code for language in LANGUAGE_TABLE}) == len(LANGUAGE_TABLE)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("de", "deu"), ("deu", "deu"), ("German", "deu"), ("zh", "cmn"), ("fa", "pes"), ("ms", "zsm"), ("sw", "swh"),
     ("lv", "lvs"), ("nb", "nob"), ("yue", "yue"), ("no", None), ("en", None)],
)
def test_match_language_in_tatoeba(given: str, expected: str | None) -> None:
    assert match_language(given, TATOEBA_LANGUAGES) == expected


def test_match_language_in_an_iso_639_1_dataset() -> None:
    available = ["ar", "de", "en", "zh"]
    assert [match_language(code, available) for code in ("deu", "German", "cmn", "ara", "en")] == [
        "de", "de", "zh", "ar", "en"]
    assert match_language("fra", available) is None
    with pytest.raises(UnknownLanguageError, match="'qq'"):
        match_language("qq", available)


def _codes_in(folder: Path, parse) -> set[str]:
    return {code for path in folder.iterdir() if (code := parse(strip_gz(path.name)))}


def test_every_language_of_the_shared_data_maps_both_ways(data_root: Path) -> None:
    """Each code in XQuAD, XQuAD-R and Tatoeba file names is in the table, and its canonical code (the form of
    training records) or its name finds the same file again."""
    tatoeba = _codes_in(data_root / "tatoeba-laser" / "v1",
                        lambda name: name.split(".")[1].split("-")[0] if name.endswith("-eng.eng") else None)
    xquad = _codes_in(data_root / "xquad", lambda name: name.split(".")[1] if name.startswith("xquad.") else None)
    xquad_r = _codes_in(data_root / "xquad-r", lambda name: name[: -len(".json")] if name.endswith(".json") else None)
    assert (len(tatoeba), len(xquad), len(xquad_r)) == (112, 12, 11)
    assert tatoeba == set(TATOEBA_LANGUAGES)
    for available in (tatoeba, xquad, xquad_r):
        for code in available:
            language = find_language(code)
            assert language is not None, code
            assert match_language(canonical_language(code), available) == code
            assert match_language(language.name, available) == code
    # The XQuAD languages other than English all have a Tatoeba pair, under their ISO 639-3 code.
    assert {match_language(code, tatoeba) for code in xquad - {"en"}} == {
        "ara", "deu", "ell", "spa", "hin", "ron", "rus", "tha", "tur", "vie", "cmn"}


def test_loaders_accept_either_form(tmp_path: Path, squad_writer, text_writer, jsonl_writer) -> None:
    article = [("Warsaw", [("Warsaw is big. It is old.", [("q1", "Where?", 0)])])]
    squad_writer(tmp_path / "xq" / "xquad.de.json", article)
    squad_writer(tmp_path / "xq" / "xquad.en.json", article)
    assert {record.lang for record in load_xquad(tmp_path / "xq", ["deu", "English"])} == {"de", "en"}
    with pytest.raises(MissingDataError, match=r"xquad\.fr\.json: file not found .*has 2 languages: de, en"):
        load_xquad(tmp_path / "xq", ["fr"])

    for side, text in (("deu", "Hallo\n"), ("eng", "Hello\n")):
        text_writer(tmp_path / "tat" / f"tatoeba.deu-eng.{side}", text)
    assert list(load_tatoeba(tmp_path / "tat", ["de"])) == ["deu"]
    with pytest.raises(MissingDataError, match=r"tatoeba\.fra-eng\.fra: file not found .*no French pair"):
        load_tatoeba(tmp_path / "tat", ["fr"])
    with pytest.raises(MissingDataError, match=r"tatoeba\.cmn-eng\.cmn: file not found .*no Chinese pair"):
        load_tatoeba(tmp_path / "tat", ["zh"])  # the file Tatoeba names Chinese by, not ISO 639-3 `zho`

    rows = [{"qid": "q1", "lang": "deu", "query": "Wo?", "passage": "Da."},
            {"qid": "q1", "lang": "en", "query": "Where?", "passage": "There."},
            {"qid": "q2", "lang": "de", "query": "Wann?", "passage": "Jetzt."}]
    records = load_parallel_jsonl(jsonl_writer(tmp_path / "mine.jsonl", rows))
    assert [record.lang for record in records] == ["de", "en", "de"]
    rows.append({"qid": "q1", "lang": "German", "query": "Wo?", "passage": "Da."})
    with pytest.raises(DataFormatError, match=r"mine2\.jsonl:4: duplicate qid 'q1' in 'de' \(first at line 1\)"):
        load_parallel_jsonl(jsonl_writer(tmp_path / "mine2.jsonl", rows))
