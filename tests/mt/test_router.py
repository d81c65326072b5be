"""Per-pair backend rules, pivoting, the route string and unsupported pairs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from prometheus_client import REGISTRY

from workers.mt.config import MTSettings, build_router
from workers.mt.errors import BackendUnavailable, UnsupportedPair
from workers.mt.router import Router, parse_rules


class Fake:
    """A translator for a fixed set of pairs that tags its output."""

    fast = True

    def __init__(self, name: str, pairs: set[tuple[str, str]]) -> None:
        self.name = name
        self.pairs = pairs
        self.calls: list[tuple[str, str, str, tuple[str, ...]]] = []

    def supports(self, src: str, tgt: str) -> bool:
        return (src, tgt) in self.pairs

    def translate(self, text: str, src: str, tgt: str, context: Sequence[str] = ()) -> str:
        self.calls.append((text, src, tgt, tuple(context)))
        return f"{text}|{self.name}:{src}{tgt}"

    def close(self) -> None:
        pass


def test_parse_rules_string_and_dict() -> None:
    rules = parse_rules("en-es=a|b, fr-*=c ,*=d")
    assert [(r.src, r.tgt, r.backends) for r in rules] == [
        ("en", "es", ("a", "b")), ("fr", "*", ("c",)), ("*", "*", ("d",)),
    ]
    assert parse_rules({"eng-spa": ["x"]})[0].src == "en"
    for bad in ("en-es", "enes=a", "en-es="):
        with pytest.raises(ValueError):
            parse_rules(bad)


def test_most_specific_rule_wins_and_falls_back_in_order() -> None:
    a, b = Fake("a", {("en", "es"), ("en", "ca")}), Fake("b", {("en", "es")})
    router = Router({"a": a, "b": b}, "*=a,en-es=b|a,en-*=a")
    assert str(router.route("en", "es")) == "b:en-es"
    assert str(router.route("en", "ca")) == "a:en-ca"
    router2 = Router({"a": a, "b": b}, "en-ca=b|a")  # b lacks en-ca: next in the chain
    assert str(router2.route("en", "ca")) == "a:en-ca"
    router3 = Router({"a": a, "b": b}, {"en-es": ["b", "a"], "*": "a"})
    assert str(router3.route("en", "es")) == "b:en-es"


def test_pivot_route_is_named_and_context_goes_to_the_first_leg() -> None:
    a = Fake("a", {("fr", "es"), ("es", "en")})
    router = Router({"a": a}, "*=a", pivots=("en", "es"))
    result = router.translate("bonjour", "fr", "en", ["avant"])
    assert result.route == "a:fr-es>a:es-en"
    assert result.text == "bonjour|a:fres|a:esen"
    assert a.calls[0][3] == ("avant",) and a.calls[1][3] == ()


def test_same_language_is_passed_through() -> None:
    router = Router({}, "*=a")
    result = router.translate("  hello   world ", "en-US", "en")
    assert (result.text, result.route) == ("hello world", "passthrough")


def test_unsupported_pair_is_a_clear_error() -> None:
    router = Router({"a": Fake("a", {("en", "es")})}, "*=a")
    with pytest.raises(UnsupportedPair, match="'en' to 'de'"):
        router.translate("hello", "en", "de")
    assert not router.supports("en", "de")
    with pytest.raises(UnsupportedPair):
        Router({}, "*=missing").route("en", "es")


def test_model_backends_load_lazily_on_first_use() -> None:
    loaded: list[str] = []

    def factory() -> Fake:
        loaded.append("m")
        return Fake("m", {("en", "es")})

    router = Router({"m": factory, "a": Fake("a", {("en", "ca")})}, "en-es=m,*=a")
    router.route("en", "ca")
    assert loaded == []
    assert router.translate("x", "en", "es").route == "m:en-es"
    router.translate("y", "en", "es")
    assert loaded == ["m"]


def test_a_backend_that_cannot_load_makes_a_fallback_route_said_everywhere() -> None:
    def broken() -> Fake:
        raise BackendUnavailable("no weights in /models/big")

    a = Fake("a", {("en", "es"), ("es", "ca")})
    router = Router({"big": broken, "a": a}, "en-es=big|a,en-ca=big,*=a", pivots=("es",))
    route = router.route("en", "es")
    assert (str(route), route.unavailable, route.fallback) == ("a:en-es", ("big",), True)
    assert router.translate("hi", "en", "es").unavailable == ("big",)
    # through a pivot: the direct rule's backend could not load
    assert str(router.route("en", "ca")) == "a:en-es>a:es-ca"
    assert router.route("en", "ca").unavailable == ("big",)
    assert not router.route("es", "ca").fallback  # its rule never named big
    with pytest.raises(UnsupportedPair, match="could not load: big"):
        Router({"big": broken}, "*=big").route("en", "es")
    assert not router.supports("es", "en")  # a has no es-en, and the only pivot is es
    assert router.health() == {
        "unavailable": {"big": "no weights in /models/big"},
        "fallback": {"en-es": "a:en-es, instead of big", "en-ca": "a:en-es>a:es-ca, instead of big"},
        "no_route": {"es-en": "no translation route from 'es' to 'en': no backend for it directly "
                              "or through pivots (es)"},
    }
    assert REGISTRY.get_sample_value("s2st_mt_backend_unavailable", {"backend": "big"}) == 1


def test_a_pair_without_a_route_is_in_health_until_it_has_one() -> None:
    router = Router({"a": Fake("a", {("en", "es")})}, "*=a")
    assert router.health() == {}
    assert not router.supports("en", "de")
    assert set(router.health()["no_route"]) == {"en-de"}


def test_real_apertium_pivots(router: Router) -> None:
    result = router.translate("Le chat est noir.", "fr", "en")
    assert result.route == "apertium:fr-es>apertium:es-en"
    assert result.text == "The cat is black."
    assert router.translate("Olá a todos.", "pt", "ca").route == "apertium:pt-es>apertium:es-ca"
    assert str(router.warm("ca", "pt")) == "apertium:ca-es>apertium:es-pt"


def test_settings_from_env() -> None:
    settings = MTSettings.from_env({
        "S2ST_MT_BACKENDS": "en-es=tiny|apertium,*=apertium",
        "S2ST_MT_MODELS": '{"tiny": {"kind": "seq2seq", "path": "/nowhere", "pairs": ["en-es"]}}',
        "S2ST_MT_PIVOTS": "es",
        "S2ST_MT_CAPTIONS": "off",
        "S2ST_MT_HOLD_TIMEOUT_S": "0.8",
    })
    assert settings.pivots == ("es",) and settings.engine.captions == "off"
    assert settings.engine.hold_timeout_s == 0.8
    assert settings.rule_models() == ["tiny"] and settings.model_fallback is False
    assert MTSettings.from_env({"S2ST_MT_MODEL_FALLBACK": "on"}).model_fallback is True
    with pytest.raises(ValueError, match="S2ST_MT_MODEL_FALLBACK must be on or off"):
        MTSettings.from_env({"S2ST_MT_MODEL_FALLBACK": "maybe"})
    assert settings.engine.idle_hold_s == 0.5  # the worker holds less for an idle listener
    assert MTSettings.from_env({"S2ST_MT_IDLE_HOLD_S": "1.5"}).engine.idle_hold_s == 1.5
    router = build_router(settings)
    # the model fails to load (no such folder), so the chain falls back to apertium
    assert str(router.route("en", "es")) == "apertium:en-es"
    with pytest.raises(BackendUnavailable, match="/nowhere"):
        router.backend("tiny")  # the failure is remembered, not retried per pair
    router.close()
    with pytest.raises(ValueError, match="S2ST_MT_MODELS"):
        MTSettings.from_env({"S2ST_MT_BACKENDS": "*=nothing"})
    with pytest.raises(ValueError, match="JSON"):
        MTSettings.from_env({"S2ST_MT_MODELS": "{bad"})
    with pytest.raises(ValueError, match="S2ST_MT_CAPTIONS"):
        MTSettings.from_env({"S2ST_MT_CAPTIONS": "sometimes"})
