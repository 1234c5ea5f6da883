"""Language codes: one table mapping ISO 639-1 ↔ ISO 639-3 ↔ English names, and the lookups every command uses.

Datasets name languages differently: XQuAD, XQuAD-R, MLQA and users' JSONL use ISO 639-1 (`de`, `zh`), the Tatoeba
(LASER) test set ISO 639-3 file names (`deu`, `cmn`). Each row of `_TABLE` is one language with every code that
denotes it, preferred first (the ISO 639-1 code when there is one, then ISO 639-3, then the individual language
that datasets use for a macrolanguage: Chinese `zh`/`zho` is Mandarin `cmn` in Tatoeba, Persian `fa`/`fas` is
`pes`, Malay `ms`/`msa` is `zsm`, Swahili `sw`/`swa` is `swh`, Latvian `lv`/`lav` is `lvs`, as in XTREME and MTEB),
then its English names. So

- `canonical_language(code)` gives the preferred code (`deu` → `de`, `German` → `de`, `gsw` → `gsw`): the form of
  training records and configs;
- `match_language(code, available)` gives the code a dataset uses for that language (`de` → `deu` in Tatoeba,
  `deu` → `de` in XQuAD-R);
- `check_language(code, path, line)` accepts a code exactly as a file name carries it.

Codes and names are matched case-insensitively; an unknown one is an `UnknownLanguageError` naming the accepted
forms.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from hybridfast.errors import DataFormatError, HybridfastError

# codes (preferred first) | English names (the first is shown). Every ISO 639-1 language, then the Tatoeba test
# languages that have no ISO 639-1 code.
_TABLE = """
aa aar | Afar
ab abk | Abkhazian; Abkhaz
ae ave | Avestan
af afr | Afrikaans
ak aka | Akan
am amh | Amharic
an arg | Aragonese
ar ara | Arabic
as asm | Assamese
av ava | Avaric; Avar
ay aym | Aymara
az aze | Azerbaijani
ba bak | Bashkir
be bel | Belarusian
bg bul | Bulgarian
bh bih | Bihari
bi bis | Bislama
bm bam | Bambara
bn ben | Bengali; Bangla
bo bod | Tibetan
br bre | Breton
bs bos | Bosnian
ca cat | Catalan
ce che | Chechen
ch cha | Chamorro
co cos | Corsican
cr cre | Cree
cs ces | Czech
cu chu | Church Slavonic; Old Church Slavonic
cv chv | Chuvash
cy cym | Welsh
da dan | Danish
de deu | German
dv div | Dhivehi; Divehi; Maldivian
dz dzo | Dzongkha
ee ewe | Ewe
el ell | Greek; Modern Greek
en eng | English
eo epo | Esperanto
es spa | Spanish; Castilian
et est | Estonian
eu eus | Basque
fa fas pes | Persian; Farsi; Iranian Persian
ff ful | Fulah; Fula
fi fin | Finnish
fj fij | Fijian
fo fao | Faroese
fr fra | French
fy fry | Western Frisian; Frisian
ga gle | Irish
gd gla | Scottish Gaelic; Gaelic
gl glg | Galician
gn grn | Guarani
gu guj | Gujarati
gv glv | Manx
ha hau | Hausa
he heb | Hebrew
hi hin | Hindi
ho hmo | Hiri Motu
hr hrv | Croatian
ht hat | Haitian Creole; Haitian
hu hun | Hungarian
hy hye | Armenian
hz her | Herero
ia ina | Interlingua
id ind | Indonesian
ie ile | Interlingue; Occidental
ig ibo | Igbo
ii iii | Sichuan Yi; Nuosu
ik ipk | Inupiaq
io ido | Ido
is isl | Icelandic
it ita | Italian
iu iku | Inuktitut
ja jpn | Japanese
jv jav | Javanese
ka kat | Georgian
kg kon | Kongo
ki kik | Kikuyu
kj kua | Kuanyama
kk kaz | Kazakh
kl kal | Kalaallisut; Greenlandic
km khm | Khmer
kn kan | Kannada
ko kor | Korean
kr kau | Kanuri
ks kas | Kashmiri
ku kur | Kurdish
kv kom | Komi
kw cor | Cornish
ky kir | Kyrgyz; Kirghiz
la lat | Latin
lb ltz | Luxembourgish
lg lug | Ganda; Luganda
li lim | Limburgish
ln lin | Lingala
lo lao | Lao
lt lit | Lithuanian
lu lub | Luba-Katanga
lv lav lvs | Latvian; Standard Latvian
mg mlg | Malagasy
mh mah | Marshallese
mi mri | Maori
mk mkd | Macedonian
ml mal | Malayalam
mn mon | Mongolian
mr mar | Marathi
ms msa zsm | Malay; Standard Malay
mt mlt | Maltese
my mya | Burmese
na nau | Nauru
nb nob | Norwegian Bokmål; Bokmål
nd nde | North Ndebele
ne nep | Nepali
ng ndo | Ndonga
nl nld | Dutch; Flemish
nn nno | Norwegian Nynorsk; Nynorsk
no nor | Norwegian
nr nbl | South Ndebele
nv nav | Navajo
ny nya | Chichewa; Nyanja
oc oci | Occitan
oj oji | Ojibwe; Ojibwa
om orm | Oromo
or ori | Odia; Oriya
os oss | Ossetian
pa pan | Punjabi; Panjabi
pi pli | Pali
pl pol | Polish
ps pus | Pashto
pt por | Portuguese
qu que | Quechua
rm roh | Romansh
rn run | Kirundi; Rundi
ro ron | Romanian; Moldavian
ru rus | Russian
rw kin | Kinyarwanda
sa san | Sanskrit
sc srd | Sardinian
sd snd | Sindhi
se sme | Northern Sami
sg sag | Sango
si sin | Sinhala
sk slk | Slovak
sl slv | Slovenian; Slovene
sm smo | Samoan
sn sna | Shona
so som | Somali
sq sqi | Albanian
sr srp | Serbian
ss ssw | Swati
st sot | Southern Sotho; Sesotho
su sun | Sundanese
sv swe | Swedish
sw swa swh | Swahili; Kiswahili
ta tam | Tamil
te tel | Telugu
tg tgk | Tajik
th tha | Thai
ti tir | Tigrinya
tk tuk | Turkmen
tl tgl | Tagalog; Filipino
tn tsn | Tswana
to ton | Tongan
tr tur | Turkish
ts tso | Tsonga
tt tat | Tatar
tw twi | Twi
ty tah | Tahitian
ug uig | Uyghur; Uighur
uk ukr | Ukrainian
ur urd | Urdu
uz uzb | Uzbek
ve ven | Venda
vi vie | Vietnamese
vo vol | Volapük
wa wln | Walloon
wo wol | Wolof
xh xho | Xhosa
yi yid | Yiddish
yo yor | Yoruba
za zha | Zhuang
zh zho cmn | Chinese; Mandarin; Mandarin Chinese
zu zul | Zulu
ang | Old English
arq | Algerian Arabic
arz | Egyptian Arabic
ast | Asturian
awa | Awadhi
ber | Berber
cbk | Chavacano
ceb | Cebuano
csb | Kashubian
dsb | Lower Sorbian
dtp | Central Dusun; Kadazan Dusun
gsw | Swiss German; Alemannic
hsb | Upper Sorbian
kab | Kabyle
kzj | Coastal Kadazan
lfn | Lingua Franca Nova
max | North Moluccan Malay
mhr | Eastern Mari; Meadow Mari
nds | Low German
nov | Novial
orv | Old Russian
pam | Kapampangan; Pampanga
pms | Piedmontese
swg | Swabian
tzl | Talossan
war | Waray
wuu | Wu Chinese; Wu
yue | Cantonese; Yue Chinese
"""


@dataclass(frozen=True)
class Language:
    """One language: its codes (preferred first) and English names (the first is the one shown)."""

    codes: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def code(self) -> str:
        """The preferred code: ISO 639-1 when the language has one, else ISO 639-3."""
        return self.codes[0]

    @property
    def name(self) -> str:
        return self.names[0]


def _parse_table(table: str) -> tuple[Language, ...]:
    rows = []
    for line in table.strip().splitlines():
        codes, names = line.split("|")
        rows.append(Language(tuple(codes.split()), tuple(name.strip() for name in names.split(";"))))
    return tuple(rows)


LANGUAGE_TABLE: tuple[Language, ...] = _parse_table(_TABLE)
"""Every language the toolkit knows by code: all of ISO 639-1 and the Tatoeba test languages."""


def _index(table: Iterable[Language]) -> dict[str, Language]:
    by_key: dict[str, Language] = {}
    for language in table:
        for key in (*language.codes, *language.names):
            known = by_key.setdefault(key.casefold(), language)
            if known is not language:
                raise AssertionError(f"language table: {key!r} names both {known.name} and {language.name}")
    return by_key


_BY_KEY = _index(LANGUAGE_TABLE)

ISO_639_1: frozenset[str] = frozenset(language.code for language in LANGUAGE_TABLE if len(language.code) == 2)
"""Every ISO 639-1 code."""

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

LANGUAGES: frozenset[str] = frozenset(code for language in LANGUAGE_TABLE for code in language.codes)
"""Every language code a data file may carry (ISO 639-1 and the ISO 639-3 codes of the table)."""

_ACCEPTED = "an ISO 639-1 code such as 'de', an ISO 639-3 code such as 'deu', or an English name such as 'German'"


class UnknownLanguageError(DataFormatError):
    """A language code or name outside `LANGUAGE_TABLE`, or one a dataset does not hold; names `path:line`
    when the code came from a file."""

    def __init__(self, path: object, line: int | None, message: str):
        if path is None:
            HybridfastError.__init__(self, message)
            self.path, self.line = None, line
        else:
            super().__init__(path, line, message)


def find_language(code_or_name: str) -> Language | None:
    """The table row for a code or English name (case-insensitive), or None."""
    return _BY_KEY.get(code_or_name.strip().casefold())


def language_name(code: str) -> str:
    """The English name of a known code (`deu` → German), else the code itself."""
    language = find_language(code)
    return language.name if language is not None else code


def require_language(code: str, path: Path | str | None = None, line: int | None = None) -> Language:
    """The table row for a code or English name; else `UnknownLanguageError` naming `path:line` (when given),
    the bad code and the accepted forms."""
    language = find_language(code)
    if language is None:
        raise UnknownLanguageError(path, line, f"unknown language code {code!r}; use {_ACCEPTED}")
    return language


def canonical_language(code: str, path: Path | str | None = None, line: int | None = None) -> str:
    """The preferred code of a language given by any code or name: `deu` → `de`, `German` → `de`, `gsw` → `gsw`
    (errors as in `require_language`)."""
    return require_language(code, path, line).code


def match_language(code: str, available: Collection[str]) -> str | None:
    """The code under which a dataset holding `available` codes stores the language `code` names, or None.

    `code` may be any code or English name: `de`, `deu` and `German` all give `deu` in Tatoeba and `de` in
    XQuAD-R; a code the dataset holds verbatim is taken as is. An unknown code raises `UnknownLanguageError`.
    """
    if code in available:
        return code
    return next((candidate for candidate in require_language(code).codes if candidate in available), None)


def describe_languages(codes: Collection[str]) -> str:
    """`2 languages: de, en` (for errors that say what a dataset holds)."""
    return f"{len(codes)} language{'s' if len(codes) != 1 else ''}: {', '.join(sorted(codes)) or 'none'}"


def parse_language_list(text: str) -> list[str]:
    """`"de, fr,zh"` → `["de", "fr", "zh"]` (a comma-separated CLI option)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def check_language(code: str, path: Path | str, line: int | None) -> str:
    """Return `code` if it is a known language code exactly as a file name carries it, else raise
    `UnknownLanguageError` naming file and line."""
    if code not in LANGUAGES:
        raise UnknownLanguageError(path, line, f"unknown language code {code!r}; use {_ACCEPTED}")
    return code
