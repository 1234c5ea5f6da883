"""Language codes that data files may carry, and the check that rejects anything else.

Two explicit sets: every ISO 639-1 code (XQuAD, MLQA, and users' own data use these), and the ISO 639-3
codes of the 112 Tatoeba (LASER) test languages, whose file names carry three-letter codes.
"""

from __future__ import annotations

from pathlib import Path

from hybridfast.errors import DataFormatError

ISO_639_1: frozenset[str] = frozenset(
    """
    aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz
    ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik
    io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml
    mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd
    se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi
    vo wa wo xh yi yo za zh zu
    """.split()
)

TATOEBA_LANGUAGES: tuple[str, ...] = tuple(
    """
    afr amh ang ara arq arz ast awa aze bel ben ber bos bre bul cat cbk ceb ces cha cmn cor csb cym dan deu
    dsb dtp ell epo est eus fao fin fra fry gla gle glg gsw heb hin hrv hsb hun hye ido ile ina ind isl ita
    jav jpn kab kat kaz khm kor kur kzj lat lfn lit lvs mal mar max mhr mkd mon nds nld nno nob nov oci orv
    pam pes pms pol por ron rus slk slv spa sqi srp swe swg swh tam tat tel tgl tha tuk tur tzl uig ukr urd
    uzb vie war wuu xho yid yue zsm
    """.split()
)
"""The ISO 639-3 codes of the Tatoeba test set (Artetxe & Schwenk 2019), in file-name order."""

LANGUAGES: frozenset[str] = ISO_639_1 | frozenset(TATOEBA_LANGUAGES) | {"eng"}
"""Every language code a data file may carry."""


class UnknownLanguageError(DataFormatError):
    """A record or file name carries a language code outside `LANGUAGES`."""


def check_language(code: str, path: Path | str, line: int | None) -> str:
    """Return `code` if it is a known language code, else raise `UnknownLanguageError` naming file and line."""
    if code not in LANGUAGES:
        raise UnknownLanguageError(
            path,
            line,
            f"unknown language code {code!r} (expected a lower-case ISO 639-1 code such as 'en' or 'zh', "
            "or a Tatoeba ISO 639-3 code such as 'deu')",
        )
    return code
