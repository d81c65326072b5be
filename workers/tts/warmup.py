"""Start-up of the TTS stage: which voices to load, and a first figure of their speed.

:func:`default_warm_langs` names the languages whose backends ``TTSStage.setup`` loads;
:func:`measure` times each loaded voice on a sentence of its language (``_RTF_SENTENCES``),
the first value of its running real-time factor (``s2st_tts_running_rtf``), which the pieces
it speaks then keep up to date; :func:`check_ready` stops the worker if a language has no
voice at all.
"""

from __future__ import annotations

from bus.logs import get_logger

from . import metrics
from .backends import base_lang
from .config import TtsConfig
from .engine import TtsEngine

log = get_logger("s2st.tts")

# A sentence of about fifteen words per language, to measure a voice's real-time factor.
_RTF_SENTENCES = {
    "en": "Good morning everyone, thank you for coming to today's meeting about the budget.",
    "es": "Buenos días a todos, gracias por venir a la reunión de hoy sobre el presupuesto.",
    "fr": "Bonjour à tous, merci d'être venus à la réunion d'aujourd'hui sur le budget.",
    "de": "Guten Morgen allerseits, danke, dass Sie zur heutigen Sitzung über den Haushalt "
          "gekommen sind.",
    "pt": "Bom dia a todos, obrigado por virem à reunião de hoje sobre o orçamento.",
    "it": "Buongiorno a tutti, grazie per essere venuti alla riunione di oggi sul bilancio.",
}

# Languages that stand for the `*` entry of the backend table when warming up.
_WILDCARD_PROBES = ("en", "es", "fr", "de", "it", "pt")


class TtsStartupError(RuntimeError):
    """A configured language cannot be spoken by any backend on this host."""


def default_warm_langs(config: TtsConfig) -> list[str]:
    """The languages named in the backend table, plus one that stands for `*`."""
    langs = [lang for lang in config.backends if lang != "*"]
    if "*" in config.backends:
        named = {base_lang(lang) for lang in langs}
        spare = next((lang for lang in _WILDCARD_PROBES if lang not in named), None)
        if spare is not None:
            langs.append(spare)
    return langs


def measure(engine: TtsEngine, ready: dict[str, str]) -> dict[str, float]:
    """Time each warmed voice other than the fallback on a sentence: the first figure of
    its running cost, which the pieces it speaks then keep up to date (a voice is never
    dropped for the run: a piece it would be late for goes to the next voice)."""
    rtfs: dict[str, float] = {}
    for lang, backend in ready.items():
        if backend not in ("none", engine.config.fallback):
            sentence = _RTF_SENTENCES.get(base_lang(lang), _RTF_SENTENCES["en"])
            rtf = engine.real_time_factor(sentence, lang, backend)
            rtfs[f"{lang}:{backend}"] = round(rtf, 2)
            metrics.RUNNING_RTF.labels(lang, backend).set(rtf)
    return rtfs


def check_ready(engine: TtsEngine, ready: dict[str, str]) -> None:
    """Stop (TtsStartupError) if a warmed language has no voice; warn of a fallback."""
    for lang, backend in ready.items():
        chain = engine.chain(lang)
        if backend == "none":
            raise TtsStartupError(
                f"no TTS backend can speak {lang!r} on this host (chain: {', '.join(chain)})"
            )
        if backend != chain[0]:
            log.warning("tts voice unavailable, falling back", lang=lang,
                        configured=chain[0], using=backend)
