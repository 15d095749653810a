"""What decides a result: content hashes of the files a job reads and of the code it runs.

Two users, both comparing content and never modification times:

* training jobs put a fingerprint (hyper-parameters, seed, inputs' sha256, `code_version()`) into
  their step checkpoints and resume only a checkpoint with the same fingerprint (`training.train`);
* the Snakefile gives every rule a `code` param, `script_code(script, ...)`: a hash of the rule's
  script and of the package modules that script imports, transitively (for `robustft.jobs`, only
  the job functions the script calls and what they import). Editing a module reruns exactly the jobs
  that run it. Import-free (no torch) and cached: the Snakefile is parsed once per cluster job.

`ROBUSTFT_CODE_DIR` points `script_code` at another copy of the package (tests edit a copy instead
of the installed package). Hashes cover file contents and package-relative names only, so a clone
or copy of the same code gives the same hashes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CODE_DIR_ENV = "ROBUSTFT_CODE_DIR"
# Written into a generated dataset's directory: the `dataset_version` it was generated for.
DATASET_VERSION_FILE = "version.txt"
# Modules hashed per function (the job dispatcher: each script calls one or two of its functions).
SLICED = ("jobs",)


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def split_digest(dataset_dir: str | Path, split: str) -> str:
    """sha256 of a split as stored: its `.npz`, or for an image folder the listing of its files with
    their sizes (hashing a real image folder's every byte at each job start would cost minutes)."""
    root = Path(dataset_dir)
    packed = root / f"{split}.npz"
    if packed.is_file():
        return sha256_file(packed)
    folder = root / split
    if not folder.is_dir():
        meta = root / "meta.json"
        spec = (
            json.loads(meta.read_text()).get("splits", {}).get(split, {}) if meta.is_file() else {}
        )
        if "carve" in spec:  # held out of another split: its data (its positions: meta.json's)
            return "carved:" + split_digest(root, spec["carve"]["from"])
        raise FileNotFoundError(f"split {split!r} not found in {root}")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\n".encode())
    return "listing:" + digest.hexdigest()


def dataset_digest(dataset_dir: str | Path, splits) -> dict[str, str]:
    """sha256 of a dataset's meta.json and of each split a job reads."""
    root = Path(dataset_dir)
    digest = {"meta.json": sha256_file(root / "meta.json")}
    digest.update({split: split_digest(root, split) for split in sorted(set(splits))})
    return digest


# Package data that is no code: the published stand-ins' weights (robustft.standins), inputs of
# import_backbone named by their sha256 in the config (and megabytes: hashed at every parse otherwise).
NOT_CODE = ("data_files/standins",)


def _package_files(root: Path, package: Path | None = None) -> list[Path]:
    """Sources and data files (model configs) under `root` (in `package`, default `root`), without
    caches and `NOT_CODE`."""
    package = package or root
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix not in (".pyc", ".pyo")
        and not any(p.relative_to(package).as_posix().startswith(d + "/") for d in NOT_CODE)
    )


def code_version(root: str | Path = PACKAGE) -> str:
    """sha256 over the package's files (.py sources and model configs; relative names and bytes)."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in _package_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# ---- the code a workflow script runs ------------------------------------------------------------
def code_dir() -> Path:
    return Path(os.environ.get(CODE_DIR_ENV) or PACKAGE).resolve()


@cache
def _module_file(root: Path, module: str) -> Path | None:
    """The file of `module` ("" = the package, "methods.base", ...) inside the package at `root`."""
    base = root.joinpath(*module.split(".")) if module else root
    if base.with_suffix(".py").is_file() and module:
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


@cache
def _parse(root: Path, module: str) -> tuple[str, ast.Module]:
    source = _module_file(root, module).read_text()
    return source, ast.parse(source)


def _imports_of(root: Path, module: str, node: ast.AST) -> set[str]:
    """Package modules imported anywhere in `node` (function bodies too), with their parents."""
    parts = module.split(".") if module else []
    package = parts if _module_file(root, module).name == "__init__.py" else parts[:-1]
    found = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            targets = [(a.name, ()) for a in sub.names]
        elif isinstance(sub, ast.ImportFrom) and sub.level:
            base = package[: len(package) - sub.level + 1]
            name = ".".join(base + (sub.module.split(".") if sub.module else []))
            targets = [(PACKAGE.name + "." + name if name else PACKAGE.name, sub.names)]
        elif isinstance(sub, ast.ImportFrom) and sub.module:
            targets = [(sub.module, sub.names)]
        else:
            continue
        for name, aliases in targets:
            if name != PACKAGE.name and not name.startswith(PACKAGE.name + "."):
                continue
            name = name[len(PACKAGE.name) + 1 :]
            candidates = [name] + [f"{name}.{a.name}".lstrip(".") for a in aliases if a.name != "*"]
            for candidate in candidates:
                if _module_file(root, candidate) is not None:
                    parts = candidate.split(".") if candidate else []
                    found.update(".".join(parts[:i]) for i in range(len(parts) + 1))
    return found


@cache
def _index(root: Path, module: str):
    """Per top-level definition of `module`: its source, the package modules it imports and the
    other top-level definitions it names; and the same for the module-level statements."""
    source, tree = _parse(root, module)
    lines = source.splitlines()
    defs = {}
    rest_text, rest_imports = [], set()
    kinds = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    names = {node.name for node in tree.body if isinstance(node, kinds)}
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        text = "\n".join(lines[first - 1 : node.end_lineno])
        if isinstance(node, kinds):
            uses = {s.id for s in ast.walk(node) if isinstance(s, ast.Name) and s.id in names}
            defs[node.name] = (text, _imports_of(root, module, node), uses)
        else:
            rest_text.append(text)
            rest_imports |= _imports_of(root, module, node)
    return defs, "\n".join(rest_text), rest_imports


@cache
def _data_files(root: Path, module: str) -> tuple[Path, ...]:
    """Package data (e.g. `model_configs/`) a module reads: entries of the package directory that
    are not Python sources and whose name the module's source mentions."""
    source = _parse(root, module)[0]
    entries = [
        p
        for p in root.iterdir()
        if p.name != "__pycache__"
        and p.suffix != ".py"
        and not (p / "__init__.py").exists()  # a subpackage is code, followed by imports
        and p.name in source
    ]
    return tuple(
        f for e in sorted(entries) for f in ([e] if e.is_file() else _package_files(e, root))
    )


@cache
def _whole_imports(root: Path, module: str) -> frozenset[str]:
    return frozenset(_imports_of(root, module, _parse(root, module)[1]))


def _sliced(root: Path, module: str, names) -> tuple[list[str], set[str]]:
    """Source of the functions `names` of `module` reach (plus its module-level statements), and the
    package modules they import."""
    defs, rest_text, imported = _index(root, module)
    texts, imported = [rest_text], set(imported)
    reached, queue = set(), [n for n in names if n in defs]
    while queue:
        name = queue.pop()
        if name not in reached:
            reached.add(name)
            queue += defs[name][2] - reached
    for name in sorted(reached):
        texts.append(defs[name][0])
        imported |= defs[name][1]
    return texts, imported


def _script_imports(script: Path, root: Path) -> tuple[list[str], set[str]]:
    """The script's package imports: source slices of the `SLICED` modules' functions it calls, and
    the modules it imports whole (directly or from those functions)."""
    texts, modules = [], set()
    for node in ast.walk(ast.parse(script.read_text())):
        if not (isinstance(node, ast.ImportFrom) and node.module and not node.level):
            continue
        if node.module != PACKAGE.name and not node.module.startswith(PACKAGE.name + "."):
            continue
        module = node.module[len(PACKAGE.name) + 1 :]
        if module in SLICED:
            sliced, imported = _sliced(root, module, [a.name for a in node.names])
            texts += [f"{module}:{t}" for t in sliced]
            modules |= imported
        else:
            modules |= _imports_of(root, "", node)
    return texts, modules


def _closure(modules: set[str], root: Path) -> set[str]:
    """Every module `modules` import, transitively (the package's own __init__ included)."""
    queue, seen = set(modules) | {""}, set()
    while queue:
        module = queue.pop()
        if module in seen or module in SLICED:
            continue
        seen.add(module)
        queue |= _whole_imports(root, module) - seen
    return seen


@cache
def _script_code(script: Path, extra_modules: tuple[str, ...], root: Path) -> str:
    texts, modules = _script_imports(script, root)
    digest = hashlib.sha256(script.read_bytes())
    for text in sorted(texts):
        digest.update(b"\0" + text.encode())
    for module in sorted(_closure(modules | set(extra_modules), root)):
        digest.update(b"\0" + module.encode() + b"\0" + _parse(root, module)[0].encode())
        for path in _data_files(root, module):
            digest.update(b"\0" + path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def script_code(script: str | Path, extra_modules=(), root: str | Path | None = None) -> str:
    """Hash of a workflow script and of the package code it runs; `extra_modules` adds modules it
    loads dynamically (a method's module, which `methods.get_method` imports by name)."""
    root = Path(root).resolve() if root else code_dir()
    return _script_code(Path(script).resolve(), tuple(sorted(extra_modules)), root)


def modules_run_by(
    script: str | Path, extra_modules=(), root: str | Path | None = None
) -> set[str]:
    """The package modules `script_code` hashes whole (besides the slices of `SLICED` modules)."""
    root = Path(root).resolve() if root else code_dir()
    return _closure(_script_imports(Path(script).resolve(), root)[1] | set(extra_modules), root)


def clear_cache() -> None:
    """Forget parsed sources (hashes are cached for the life of the process: one Snakefile parse)."""
    for fn in (_module_file, _parse, _index, _whole_imports, _data_files, _script_code):
        fn.cache_clear()
