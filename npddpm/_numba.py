"""Every compilation option of npddpm's Numba code, in one place.

Every ``numba.njit`` and ``numba.cuda.jit`` in the package goes through :func:`cpu_jit` or
:func:`cuda_jit`; no other module passes options to Numba. Nothing here imports Numba at
module level: the helpers import it when the first kernel is built, which happens on the
first call that needs one (so ``import npddpm`` and its subpackages compile nothing).

Environment variables (read once, at import of this module)
------------------------------------------------------------
``NPDDPM_NUMBA_CACHE``
    ``1`` (default) caches every compiled CPU kernel (the sampling kernels of
    :mod:`npddpm.kernels.cpu`, the nn layers' ``npddpm/nn/_*.py`` kernels, Adam, the
    metrics' and data sets' kernels) on disk, so a second process loads them instead of
    compiling (a warm ``npddpm sample`` or ``train`` starts in well under a second instead of
    about five); ``0`` compiles afresh in every process.
``NPDDPM_NUMBA_CACHE_DIR``
    Where the cache lives: this variable, else ``NUMBA_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/npddpm/numba`` (``~/.cache/npddpm/numba``). See *Cache invalidation*.
``NPDDPM_NUMBA_THREADING_LAYER``
    Numba's threading layer for the parallel CPU kernels (``default``, ``omp``, ``tbb``,
    ``workqueue``). The number of threads is Numba's: ``NUMBA_NUM_THREADS`` or
    ``numba.set_num_threads``. Results never depend on it.
``NPDDPM_CUDA_THREADS_PER_BLOCK``, ``NPDDPM_CUDA_MAX_BLOCKS``
    CUDA launch shape (default 256 threads, at most 4096 blocks; the kernels use
    grid-stride loops, so any shape gives the same result).

Cache invalidation
------------------
Numba's own cache is keyed on the kernel's source file (path, mtime, size) and the
function's bytecode only: an edit to a helper in another file that a kernel inlines
(``npddpm/rng.py``, ``npddpm/kernels/elementwise.py``, ``npddpm/nn/_fused.py``) would load a
stale kernel, and a global variable or closure value is frozen into the code as a constant.
So npddpm replaces the cache's *locator* and *index key* (:func:`cpu_jit` installs them on
each dispatcher):

* the directory is ``<cache dir>/<version>-<numba version>-<source hash>/``, where the source
  hash is the SHA-256 of every ``npddpm/**/*.py`` file (paths and contents; computed once per
  process, a few milliseconds): any edit to npddpm's sources, in any file, starts a fresh
  directory (old ones are left; delete the cache directory to reclaim them);
* each entry's key adds, to Numba's signature and CPU, a hash of the function's bytecode and
  constants, its closure values and the global values it reads, followed recursively through
  the other kernels it calls (by value: numbers, strings, tuples, arrays, dtypes, external
  function signatures), so a kernel built from a different value at run time (a dtype, a
  constant, a BLAS integer width) never loads another one's code.

A function that cannot be cached (one using a ctypes pointer) is compiled as before, with
Numba's warning. :func:`source_hash` and :func:`cache_dir` report what is in use.

``fastmath`` is off everywhere: with it off the CPU kernels are bitwise equal to the NumPy
reference (tested in ``tests/kernels``); with it on LLVM contracts multiply-adds (1-ulp changes).
A kernel that wants a fused multiply-add asks for one by name, :func:`fma` (one rounding, the
same result on every machine), never by letting LLVM contract.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CACHE",
    "CUDA_MAX_BLOCKS",
    "CUDA_THREADS_PER_BLOCK",
    "FASTMATH",
    "THREADING_LAYER",
    "cache_dir",
    "code_names",
    "cpu_jit",
    "cuda_jit",
    "cuda_launch_shape",
    "fma",
    "source_hash",
]


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() not in ("0", "false", "no", "off", "")


CACHE: bool = _flag("NPDDPM_NUMBA_CACHE", "1")
FASTMATH: bool = False
THREADING_LAYER: str = os.environ.get("NPDDPM_NUMBA_THREADING_LAYER", "default")
CUDA_THREADS_PER_BLOCK: int = int(os.environ.get("NPDDPM_CUDA_THREADS_PER_BLOCK", "256"))
CUDA_MAX_BLOCKS: int = int(os.environ.get("NPDDPM_CUDA_MAX_BLOCKS", "4096"))


def cpu_jit(
    *,
    parallel: bool = False,
    inline: bool = False,
    cache: bool | None = None,
    nogil: bool = True,
    error_model: Literal["numpy", "python"] = "numpy",
    boundscheck: bool | None = None,
    signature: Any = None,
) -> Callable[[Callable[..., Any]], Any]:
    """A ``numba.njit`` decorator with npddpm's options.

    Parameters
    ----------
    parallel : bool, default False
        ``parallel=True`` for the row-parallel (``prange``) kernels; selects
        :data:`THREADING_LAYER` when that is not ``"default"``.
    inline : bool, default False
        Inline the function into its callers at Numba-IR level (``inline="always"``; needed
        for the Philox, normal-transform and per-element helpers: a call left in a loop stops
        LLVM from vectorising it). ``False`` is Numba's default, ``"never"``.
    cache : bool or None, default None
        Cache the compiled code on disk; ``None`` means :data:`CACHE`. The cache is keyed on
        the hash of all npddpm sources and on the values the function reads (module
        docstring, *Cache invalidation*), so an edit to any file invalidates it.
    nogil : bool, default True
        Release the GIL while running (the nn layers run chunks of a batch in threads).
    error_model : {"numpy", "python"}, default "numpy"
        ``"numpy"``: division by zero gives inf or nan, as in NumPy, and does not block
        vectorisation; ``"python"`` raises ``ZeroDivisionError`` (Numba's default).
    boundscheck : bool or None, default None
        Passed on when not None; None leaves Numba's default (off, or ``NUMBA_BOUNDSCHECK``).
    signature : optional
        An explicit Numba signature (eager compilation); None compiles lazily per type.

    ``fastmath`` is always :data:`FASTMATH` (off).
    """
    import numba

    if parallel and THREADING_LAYER != "default":
        # numba.config's options are set at import, not declared
        numba.config.THREADING_LAYER = THREADING_LAYER  # type: ignore[attr-defined]
    use_cache = CACHE if cache is None else bool(cache)
    options: dict[str, Any] = {
        "cache": False,  # npddpm's own cache is installed below
        "fastmath": FASTMATH,
        "parallel": parallel,
        "nogil": nogil,
        "error_model": error_model,
        "inline": "always" if inline else "never",
    }
    if boundscheck is not None:
        options["boundscheck"] = boundscheck
    decorator = numba.njit(signature, **options) if signature is not None else numba.njit(**options)
    if not use_cache:
        return decorator

    def cached(fn: Callable[..., Any]) -> Any:
        if signature is not None:
            # eager compilation happens inside njit; compile lazily, then cache, then compile
            dispatcher = numba.njit(**options)(fn)
            _enable_cache(dispatcher)
            dispatcher.compile(signature)
            dispatcher.disable_compile()  # as numba.njit(signature) does
            return dispatcher
        dispatcher = decorator(fn)
        _enable_cache(dispatcher)
        return dispatcher

    return cached


def cache_dir() -> Path:
    """The directory npddpm's kernels are cached in, for this version and these sources
    (``<root>/<version>-<numba version>-<source hash[:16]>``; see the module docstring)."""
    import numba

    from . import __version__

    root = os.environ.get("NPDDPM_NUMBA_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "npddpm", "numba")
    return Path(root) / f"{__version__}-{numba.__version__}-{source_hash()[:16]}"


@functools.cache
def source_hash() -> str:
    """SHA-256 (hex) of every ``npddpm/**/*.py`` file: relative paths and contents, sorted."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _enable_cache(dispatcher: Any) -> None:
    """Give ``dispatcher`` npddpm's on-disk cache (no cache if no directory is writable)."""
    try:
        dispatcher._cache = _cache_class()(dispatcher.py_func)
    except (OSError, RuntimeError):  # no writable cache directory: compile in memory
        pass


def _stable_key(obj: Any, memo: dict[int, str]) -> str:
    """A description of ``obj`` that is equal across processes exactly when the value a
    kernel would freeze in is (functions and dispatchers followed by value)."""
    import numpy as np

    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return f"{type(obj).__name__}:{obj!r}"
    if isinstance(obj, np.generic):
        return f"np.{obj.dtype.str}:{obj!r}"
    if isinstance(obj, np.ndarray):
        return f"ndarray:{obj.dtype.str}:{obj.shape}:{hashlib.sha256(obj.tobytes()).hexdigest()}"
    if isinstance(obj, np.dtype):
        return f"dtype:{obj.str}"
    if isinstance(obj, (tuple, list, frozenset, set)):
        items = [_stable_key(x, memo) for x in obj]
        if isinstance(obj, (set, frozenset)):
            items.sort()
        return f"{type(obj).__name__}({','.join(items)})"
    if isinstance(obj, types.ModuleType):
        return f"module:{obj.__name__}"
    if isinstance(obj, type):
        return f"type:{obj.__module__}.{obj.__qualname__}"
    py_func = getattr(obj, "py_func", None)
    if isinstance(py_func, types.FunctionType):  # a Numba dispatcher
        options = sorted((k, repr(v)) for k, v in getattr(obj, "targetoptions", {}).items())
        return f"dispatcher:{options}:{_stable_key(py_func, memo)}"
    if isinstance(obj, types.FunctionType):
        key = id(obj)
        if key in memo:
            return memo[key]
        memo[key] = f"recursive:{obj.__module__}.{obj.__qualname__}"
        code = obj.__code__
        parts = [f"function:{obj.__module__}.{obj.__qualname__}", _code_key(code)]
        if obj.__closure__:
            parts.append(_stable_key(tuple(c.cell_contents for c in obj.__closure__), memo))
        for name in sorted(code_names(code)):
            if name in obj.__globals__:
                parts.append(f"{name}={_stable_key(obj.__globals__[name], memo)}")
        memo[key] = hashlib.sha256("|".join(parts).encode()).hexdigest()
        return memo[key]
    # numba types (ExternalFunction, …) and anything else: type and repr (a repr with an
    # address only makes the key differ between processes, i.e. a miss, never a stale hit)
    return f"{type(obj).__module__}.{type(obj).__qualname__}:{obj!r}"


def _code_key(code: types.CodeType) -> str:
    consts = []
    for c in code.co_consts:
        is_code = isinstance(c, types.CodeType)
        consts.append(_code_key(c) if is_code else f"{type(c).__name__}:{c!r}")
    return hashlib.sha256(code.co_code + "|".join(consts).encode()).hexdigest()


def code_names(code: types.CodeType) -> set[str]:
    """The global and attribute names ``code`` reads, nested functions' code included."""
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= code_names(c)
    return names


def _function_key(py_func: Any) -> str:
    return hashlib.sha256(_stable_key(py_func, {}).encode()).hexdigest()


@functools.cache
def _cache_class() -> type:
    """Numba's ``FunctionCache`` with npddpm's locator (:func:`cache_dir`, stamped with
    :func:`source_hash`) and index key (:func:`_function_key`)."""
    from numba.core import caching

    class _Locator(caching._CacheLocator):
        def __init__(self, py_func: Any, py_file: str) -> None:
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = str(cache_dir() / self.get_suitable_cache_subpath(py_file))

        def get_cache_path(self) -> str:
            return self._cache_path

        def get_source_stamp(self) -> str:
            return source_hash()

        def get_disambiguator(self) -> str:
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if not os.path.exists(py_file):
                return None
            locator = cls(py_func, py_file)
            try:
                locator.ensure_cache_path()
            except OSError:
                return None
            return locator

    class _Impl(caching.CompileResultCacheImpl):
        _locator_classes = [_Locator]  # noqa: RUF012 (Numba's attribute, a list)

    class _Cache(caching.FunctionCache):
        _impl_class = _Impl

        def _index_key(self, sig: Any, codegen: Any) -> tuple[Any, ...]:
            return (sig, codegen.magic_tuple(), _function_key(self._py_func), sys.version)

    return _Cache


@functools.cache
def fma() -> Any:
    """The fused multiply-add ``fma(a, b, c) = a·b + c`` rounded once, for CPU kernels.

    A Numba intrinsic emitting LLVM's ``llvm.fma``, whose result is the exactly rounded
    a·b + c on every machine (IEEE 754 fusedMultiplyAdd): a ``vfmadd`` where the CPU has FMA
    (vectorised with the loop around it), a correctly rounded library call where it has not.
    So a kernel using it gives the same bits everywhere, unlike ``fastmath`` contraction,
    which fuses whatever and wherever LLVM chooses. Operands: three floats of one type.

    Examples
    --------
    >>> f = fma()
    >>> kernel = cpu_jit()(lambda a, b, c: f(a, b, c))
    >>> kernel(1.0 + 2.0**-30, 1.0 - 2.0**-30, -1.0)  # a·b − 1 = −2⁻⁶⁰, lost without fusing
    -8.673617379884035e-19
    """
    from numba.core import types as nt
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx: Any, a: Any, b: Any, c: Any) -> Any:
        if not (isinstance(a, nt.Float) and a == b == c):
            return None

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.fma(*args)

        return a(a, b, c), codegen

    return fma


def cuda_jit(*, device: bool = False) -> Callable[[Callable[..., Any]], Any]:
    """A ``numba.cuda.jit`` decorator with npddpm's options: fastmath off, no cache (PTX is
    built per GPU); ``device=True`` for functions called from kernels."""
    from numba import cuda

    return cuda.jit(device=device, fastmath=FASTMATH)


def cuda_launch_shape(n_work: int) -> tuple[int, int]:
    """``(blocks, threads_per_block)`` for ``n_work`` grid-stride items (read from
    :data:`CUDA_THREADS_PER_BLOCK` and :data:`CUDA_MAX_BLOCKS` at each call)."""
    tpb = max(1, int(CUDA_THREADS_PER_BLOCK))
    blocks = max(1, min(int(CUDA_MAX_BLOCKS), -(-int(n_work) // tpb)))
    return blocks, tpb
