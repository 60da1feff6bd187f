"""Celery's settings: every name known, and what we do with each."""

from __future__ import annotations

import csv
from pathlib import Path

from kernel.client.celery_settings import (
    CELERY_SETTINGS,
    HONOURED,
    IGNORED,
    OLD_NAMES,
    PLUGIN,
    REFUSED,
)
from kernel.client.config import CORE_SETTINGS
from kernel.manager import PluginManager
from kernel.settings import declared_by

TSV = Path(__file__).parent / "data" / "celery-settings.tsv"


def celery_list() -> dict[str, dict[str, str]]:
    lines = [line for line in TSV.read_text().splitlines() if not line.startswith("#")]
    return {row["name"]: row for row in csv.DictReader(lines, delimiter="\t")}


def declared_by_plugin(name: str) -> set[str]:
    """The setting keys installed plugin `name` declares (its steps' fields, kernel_settings)."""
    pm = PluginManager()
    probe = PluginManager(discover=False)
    probe.add(pm.installed[name].load(), name)
    keys = {
        s.key for _, found in probe.call_each("kernel_steps") for c in found for s in declared_by(c)
    }
    keys.update(s.key for _, found in probe.call_each("kernel_settings") for s in found or ())
    return keys


# -- the table --------------------------------------------------------------------------------
def test_the_table_holds_every_celery_setting_with_its_old_name_and_default() -> None:
    listed = celery_list()
    assert len(listed) == 207 and set(CELERY_SETTINGS) == set(listed)
    for name, row in listed.items():
        known = CELERY_SETTINGS[name]
        assert known.old == row["old_name"] and OLD_NAMES[row["old_name"]] == name
        default = row["default"]  # Celery's repr, cut short where long
        shown = repr(known.default)
        assert shown.startswith(default[:-3]) if default.endswith("...") else shown == default
        assert known.what in (HONOURED, PLUGIN, IGNORED, REFUSED), name
        assert known.note or known.what in (HONOURED, PLUGIN), f"{name} says nothing to do"


def test_honoured_names_are_the_core_declarations_of_celery_names() -> None:
    core = {item.key for item in CORE_SETTINGS}
    honoured = {name for name, known in CELERY_SETTINGS.items() if known.what == HONOURED}
    assert honoured <= core
    # a Celery name the core declares is honoured by it, or by a plugin it names
    assert {k for k in core & set(CELERY_SETTINGS) if CELERY_SETTINGS[k].what != PLUGIN} == honoured


def test_plugin_names_are_declared_by_their_plugin_and_no_plugin_declares_the_others() -> None:
    core = {item.key for item in CORE_SETTINGS}
    pm = PluginManager()
    plugins = [name for name in pm.installed if not name.startswith("core.")]
    declared = {name: declared_by_plugin(name) for name in plugins}
    for name, known in CELERY_SETTINGS.items():
        if known.what == PLUGIN:
            assert known.plugin in declared, f"{name}: plugin {known.plugin} is not installed"
            # the rpc backend reads result_persistent from the app, as transports read theirs
            assert name in declared[known.plugin] | core or name == "result_persistent", name
        elif known.what in (IGNORED, REFUSED):
            # once a plugin honours one of these, the table must say so (what: plugin)
            assert not [p for p, keys in declared.items() if name in keys], name
