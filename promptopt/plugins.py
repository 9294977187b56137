"""The plugin manager: built-in methods and third-party plugins load the same way, through entry points."""

from __future__ import annotations

import functools
import logging
import os
from importlib import metadata

import pluggy

from promptopt import hookspecs
from promptopt.errors import PromptoptError

ENTRY_POINT_GROUP = "promptopt"
log = logging.getLogger(__name__)

_pm: pluggy.PluginManager | None = None


def _allowed_names(allow) -> set[str] | None:
    if allow is None:
        env = os.environ.get("PROMPTOPT_PLUGINS")
        if env is None:
            return None
        allow = env
    if isinstance(allow, str):
        allow = [a for a in allow.split(",") if a.strip()]
    return {a.strip() for a in allow}


#: hooks that only observe a run: an implementation that raises is reported and the run goes on (see hookspecs)
LOGGING_HOOKS = ("run_start", "training_step", "evaluation", "run_end")
#: set to True on a plugin (module or object) to let its logging hooks' exceptions stop the run
STRICT_ATTRIBUTE = "promptopt_strict_hooks"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, with the promptopt rule for logging hooks: an exception in a plugin's ``run_start``,
    ``training_step``, ``evaluation`` or ``run_end`` is logged as a warning naming the plugin and the hook, and the
    run continues, unless the plugin sets ``promptopt_strict_hooks = True``."""

    def register(self, plugin, name=None):
        name = super().register(plugin, name)
        if name is not None and not getattr(plugin, STRICT_ATTRIBUTE, False):
            for caller in self.get_hookcallers(plugin) or []:
                if caller.name in LOGGING_HOOKS:
                    for impl in caller.get_hookimpls():
                        if impl.plugin is plugin:
                            label = type(plugin).__qualname__ if name.isdigit() else name  # unnamed objects
                            impl.function = _reported(impl.function, label, caller.name)
        return name


def _reported(function, plugin: str, hook: str):
    @functools.wraps(function)
    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a logging plugin must not kill a training run
            log.warning("plugin %r failed in hook %s (%s: %s); the run goes on (set promptopt_strict_hooks = True "
                        "on the plugin to make this fatal)", plugin, hook, type(e).__name__, e)  # fmt: skip
            return None

    return call


def make_plugin_manager(allow=None, extra_plugins=()) -> pluggy.PluginManager:
    """Build a plugin manager: every ``promptopt`` entry point (or only those named in ``allow`` / the
    comma-separated ``PROMPTOPT_PLUGINS``), plus ``extra_plugins`` (modules or objects), then ``check_pending()``
    so that a misspelled hook implementation fails loudly."""
    pm = PluginManager("promptopt")
    pm.add_hookspecs(hookspecs)
    names = _allowed_names(allow)
    found = set()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.add(ep.name)
        if names is not None and ep.name not in names:
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as e:  # a broken third-party plugin must say which one it is
            raise PromptoptError(f"plugin {ep.name!r} ({ep.value}) failed to load: {type(e).__name__}: {e}") from e
        pm.register(plugin, name=ep.name)
    if names is not None and names - found:
        raise PromptoptError(f"PROMPTOPT_PLUGINS names {sorted(names - found)}, not installed; installed: {sorted(found)}")
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use."""
    global _pm
    if _pm is None:
        _pm = make_plugin_manager()
    return _pm


def reset_plugin_manager(pm: pluggy.PluginManager | None = None) -> None:
    """Replace (or, with None, forget) the process-wide manager; used by tests and by ``--plugins``."""
    global _pm
    _pm = pm


def optimizers(pm=None) -> dict[str, tuple[type, str]]:
    """Registered optimizer classes by method id, with the name of the plugin that registered each."""
    pm = pm or get_plugin_manager()
    out: dict[str, tuple[type, str]] = {}
    for impl in pm.hook.register_optimizers.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or repr(impl.plugin)

        def register(cls, _plugin=plugin_name):
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PromptoptError(f"plugin {_plugin!r} registered {cls!r}, which has no 'name'")
            if name in out:
                raise PromptoptError(f"method {name!r} is registered twice: by {out[name][1]!r} and by {_plugin!r}")
            out[name] = (cls, _plugin)

        impl.function(register=register)
    return out


def get_optimizer(name: str, pm=None) -> type:
    found = optimizers(pm)
    if name not in found:
        raise PromptoptError(
            f"no method {name!r}; registered: {sorted(found)}. "
            "(Methods come from 'promptopt' entry points: is promptopt installed, e.g. 'pip install -e .'?)"
        )
    return found[name][0]


def tasks(pm=None) -> dict:
    """Registered task specs by name (parsed lazily only when a plugin registers a path)."""
    from promptopt.data.tasks import TaskSpec, parse_task_spec

    pm = pm or get_plugin_manager()
    out: dict = {}

    def register(item):
        spec = item if isinstance(item, TaskSpec) else parse_task_spec(item)
        if spec.name in out and out[spec.name].path != spec.path:
            raise PromptoptError(f"task {spec.name!r} is registered twice: {out[spec.name].path} and {spec.path}")
        out[spec.name] = spec

    pm.hook.register_tasks(register=register)
    return out


def get_task(name_or_path, pm=None):
    """A task by registered name, or by the path of a spec file."""
    from pathlib import Path

    from promptopt.data.tasks import TaskSpec, parse_task_spec

    if isinstance(name_or_path, TaskSpec):
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    # a registered name wins over a same-named folder in the working directory, unless the argument looks like a path
    looks_like_path = path.suffix in (".toml", ".json") or "/" in text or os.sep in text or text.startswith((".", "~"))
    if looks_like_path:
        return parse_task_spec(path.expanduser())
    found = tasks(pm)
    if name_or_path not in found and path.is_file():
        return parse_task_spec(path)
    if name_or_path not in found:
        raise PromptoptError(f"no task {name_or_path!r}; registered: {sorted(found)} (or give a spec file's path)")
    return found[name_or_path]
