import pytest

from toolkit.errors import SafeCompressError, UnknownNameError
from toolkit.registry import Registry


def test_unknown_name_lists_known_names_and_suggests():
    reg = Registry("attack")
    reg.register("loss", lambda: 1)
    reg.register("entropy", lambda: 2)
    with pytest.raises(UnknownNameError) as err:
        reg.get("los")
    msg = str(err.value)
    assert "unknown attack 'los'" in msg and "known: loss, entropy" in msg and "did you mean 'loss'" in msg
    assert err.value.exit_code == 2


def test_lazy_entries_import_on_first_use_only():
    reg = Registry("thing")
    reg.register("dec", "json.decoder:JSONDecoder", kind="x")
    assert reg.meta("dec") == {"kind": "x"}
    import json.decoder

    assert reg.get("dec") is json.decoder.JSONDecoder


def test_registering_twice_is_an_error():
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError):
        reg.register("a", 2)


def test_error_messages_are_one_line():
    assert "\n" not in str(SafeCompressError("a\nb\n  c"))


def test_registry_does_not_import_heavy_modules_when_listing():
    from toolkit.models import FRAMEWORKS

    assert FRAMEWORKS.names() == ["torch", "keras", "tflite"]
    assert FRAMEWORKS.meta("torch")["trainable"] is True
