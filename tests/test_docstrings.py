"""Every public function, class and public method of npddpm's public modules has a
docstring (a method overriding a documented one inherits it, as ``inspect.getdoc`` does)."""

import importlib
import inspect
import pkgutil

import npddpm


def _public_modules():
    for info in pkgutil.walk_packages(npddpm.__path__, "npddpm."):
        parts = info.name.split(".")[1:]
        if any(p.startswith("_") for p in parts) or info.name == "npddpm.testing.plugin":
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # an optional extra (torch, diffusers, dask) not installed
            continue


def _undocumented():
    for mod in _public_modules():
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name, None)
            if getattr(obj, "__module__", None) != mod.__name__:
                continue  # re-exported: checked where it is defined
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and not inspect.getdoc(obj):
                yield f"{mod.__name__}.{name}"
            if not inspect.isclass(obj):
                continue
            for key, value in vars(obj).items():
                if key.startswith("_"):
                    continue
                if isinstance(value, property):
                    fn, doc = value.fget, value.__doc__
                else:
                    fn = getattr(value, "__func__", value)
                    doc = inspect.getdoc(getattr(obj, key, None))
                if inspect.isfunction(fn) and fn.__name__ != "<lambda>" and not doc:
                    yield f"{mod.__name__}.{name}.{key}"


def test_public_names_have_docstrings():
    missing = sorted(_undocumented())
    assert not missing, f"{len(missing)} public names without a docstring: {missing}"
