"""Language codes: everything inside the engine uses ISO 639-1 (two letters) where one exists."""

from __future__ import annotations

# ISO 639-3 / 639-2 (bibliographic) -> 639-1, for the languages the backends name.
_THREE_TO_TWO: dict[str, str] = {
    "eng": "en", "spa": "es", "cat": "ca", "fra": "fr", "fre": "fr", "por": "pt",
    "deu": "de", "ger": "de", "ita": "it", "glg": "gl", "oci": "oc", "eus": "eu",
    "baq": "eu", "arg": "an", "ast": "ast", "nld": "nl", "dut": "nl", "ron": "ro",
    "rum": "ro", "epo": "eo", "ara": "ar", "rus": "ru", "ukr": "uk", "pol": "pl",
    "zho": "zh", "chi": "zh", "jpn": "ja", "kor": "ko", "hin": "hi", "tur": "tr",
    "swe": "sv", "dan": "da", "nob": "nb", "nno": "nn", "fin": "fi", "ell": "el",
    "gre": "el", "ces": "cs", "cze": "cs", "hun": "hu", "bul": "bg", "hrv": "hr",
    "srp": "sr", "slv": "sl", "slk": "sk", "slo": "sk", "lit": "lt", "lav": "lv",
    "est": "et", "mlt": "mt", "gle": "ga", "cym": "cy", "wel": "cy", "bre": "br",
}

# FLORES-200 codes used by NLLB models.
FLORES: dict[str, str] = {
    "en": "eng_Latn", "es": "spa_Latn", "ca": "cat_Latn", "fr": "fra_Latn", "pt": "por_Latn",
    "de": "deu_Latn", "it": "ita_Latn", "gl": "glg_Latn", "eu": "eus_Latn", "nl": "nld_Latn",
    "ro": "ron_Latn", "ru": "rus_Cyrl", "uk": "ukr_Cyrl", "pl": "pol_Latn", "zh": "zho_Hans",
    "ja": "jpn_Jpan", "ko": "kor_Hang", "ar": "arb_Arab", "hi": "hin_Deva", "tr": "tur_Latn",
    "sv": "swe_Latn", "da": "dan_Latn", "fi": "fin_Latn", "el": "ell_Grek", "cs": "ces_Latn",
}

# English names, for prompts.
NAMES: dict[str, str] = {
    "en": "English", "es": "Spanish", "ca": "Catalan", "fr": "French", "pt": "Portuguese",
    "de": "German", "it": "Italian", "gl": "Galician", "eu": "Basque", "nl": "Dutch",
    "ro": "Romanian", "ru": "Russian", "uk": "Ukrainian", "pl": "Polish", "zh": "Chinese",
    "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi", "tr": "Turkish",
    "sv": "Swedish", "da": "Danish", "fi": "Finnish", "el": "Greek", "cs": "Czech",
    "oc": "Occitan", "eo": "Esperanto",
}


def normalize(code: str) -> str:
    """``'en-US'``, ``'EN'``, ``'eng'`` -> ``'en'``; raises ValueError on an empty code."""
    base = code.strip().replace("_", "-").split("-", 1)[0].lower()
    if not base.isalpha():
        raise ValueError(f"not a language code: {code!r}")
    return _THREE_TO_TWO.get(base, base)


def name(code: str) -> str:
    """The English name of a language, or the code itself when unknown."""
    return NAMES.get(code, code)
