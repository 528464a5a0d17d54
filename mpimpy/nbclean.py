"""Shipped notebooks stay free of outputs: one cleaning rule, used everywhere.

The notebooks in ``notebooks/`` are their own source: edited in JupyterLab and committed as
they are, with no outputs (outputs belong to executed copies: ``outputs/``, MLflow runs). The
rule is nbstripout's (outputs, execution counts, widget state and volatile metadata removed,
cell ids kept) with :data:`EXTRA_KEYS`, applied by

* :func:`pre_save_hook`, the Jupyter server's pre-save hook, so that using a shipped notebook
  in JupyterLab, the explorer included, saves it clean and ``git status`` stays clean (runs
  do not log a ``-dirty`` commit); keep a copy with outputs by saving it outside
  ``notebooks/``;
* the git filter ``mpimpy-nbclean`` (``.gitattributes``) for notebooks edited with other
  tools;
* the test that checks every committed notebook is clean (:func:`is_clean`).

``python -m mpimpy.nbclean --install`` (run by ``make setup``) enables this module as a
Jupyter server extension of the environment, which registers the hook
(``<sys.prefix>/etc/jupyter/jupyter_server_config.d/mpimpy.json``);
``--install-git-filter`` configures the filter in the checkout's git configuration (once per
clone, see ``notebooks/README.md``). ``python -m mpimpy.nbclean FILE...`` cleans notebooks in
place (``--check``: only report the ones that are not clean); with no file it filters
standard input to standard output, as git runs it.
"""

from __future__ import annotations

import copy
from pathlib import Path

#: Metadata removed besides nbstripout's own defaults: what a kernel writes about itself.
EXTRA_KEYS = [
    "metadata.signature",
    "metadata.widgets",
    "metadata.language_info",
    "metadata.papermill",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
    "cell.metadata.papermill",
    "cell.metadata.trusted",
]


def clean(notebook):
    """``notebook`` (an nbformat node, changed in place and returned) without outputs,
    execution counts or the :data:`EXTRA_KEYS` metadata."""
    from nbstripout import strip_output

    return strip_output(notebook, keep_output=False, keep_count=False, keep_id=True,
                        extra_keys=EXTRA_KEYS)


def is_clean(notebook) -> bool:
    """Whether :func:`clean` would leave ``notebook`` as it is."""
    return clean(copy.deepcopy(notebook)) == notebook


def shipped_dir() -> Path:
    """The folder of the shipped notebooks (``<project>/notebooks``)."""
    from mpimpy.tracking import project_root

    return (project_root() / "notebooks").resolve()


def pre_save_hook(model, path, contents_manager, **kwargs):
    """Jupyter ``ContentsManager.pre_save_hook``: clean a notebook saved into the shipped
    notebooks' folder (anything else is saved as it is)."""
    if model.get("type") != "notebook" or not model.get("content"):
        return
    root = Path(getattr(contents_manager, "root_dir", "."))
    target = (root / path.lstrip("/")).resolve()
    if target.parent != shipped_dir():
        return
    import nbformat

    model["content"] = clean(nbformat.from_dict(model["content"]))


#: Name of the git filter (``.gitattributes``: ``notebooks/*.ipynb filter=mpimpy-nbclean``).
GIT_FILTER = "mpimpy-nbclean"


def _jupyter_server_extension_points():
    """This module is a Jupyter server extension: it registers :func:`pre_save_hook`."""
    return [{"module": "mpimpy.nbclean"}]


def _load_jupyter_server_extension(serverapp):
    serverapp.contents_manager.register_pre_save_hook(pre_save_hook)
    serverapp.log.info("mpimpy: notebooks saved into %s are saved without outputs",
                       shipped_dir())


def install() -> str:
    """Enable this module as a Jupyter server extension of this environment (so that its
    :func:`pre_save_hook` runs in every Jupyter server started from it); returns where."""
    import json
    import sys

    folder = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d"
    folder.mkdir(parents=True, exist_ok=True)
    config = {"ServerApp": {"jpserver_extensions": {"mpimpy.nbclean": True}}}
    (folder / "mpimpy.json").write_text(json.dumps(config, indent=2) + "\n")
    return f"Jupyter server extension mpimpy.nbclean (pre-save hook): {folder / 'mpimpy.json'}"


def install_git_filter() -> str:
    """Configure the git filter :data:`GIT_FILTER` of the checkout (its git configuration,
    shared by all its worktrees) to run this Python's ``-m mpimpy.nbclean``."""
    import subprocess
    import sys

    from mpimpy.tracking import project_root

    command = f"{Path(sys.executable).as_posix()} -m mpimpy.nbclean"
    for key, value in (("clean", command), ("smudge", "cat")):
        subprocess.run(["git", "-C", str(project_root()), "config", f"filter.{GIT_FILTER}.{key}",
                        value], check=True)
    return f"git filter {GIT_FILTER}: {command}"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    import nbformat

    parser = argparse.ArgumentParser(prog="python -m mpimpy.nbclean",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="notebooks to clean in place (none: a filter "
                        "from standard input to standard output)")
    parser.add_argument("--check", action="store_true", help="only list unclean notebooks")
    parser.add_argument("--install", action="store_true",
                        help="install the Jupyter pre-save hook for this environment")
    parser.add_argument("--install-git-filter", action="store_true",
                        help="configure the git filter of this checkout")
    args = parser.parse_args(argv)
    if args.install or args.install_git_filter:
        print(install() if args.install else install_git_filter())
        return 0
    if not args.files:
        notebook = nbformat.read(sys.stdin, as_version=nbformat.NO_CONVERT)
        nbformat.write(clean(notebook), sys.stdout)
        return 0
    unclean = []
    for name in args.files:
        notebook = nbformat.read(name, as_version=nbformat.NO_CONVERT)
        if not is_clean(notebook):
            unclean.append(name)
            if not args.check:
                nbformat.write(clean(notebook), name)
    for name in unclean:
        print(("not clean: " if args.check else "cleaned: ") + name)
    return 1 if args.check and unclean else 0


__all__ = ["EXTRA_KEYS", "GIT_FILTER", "clean", "install", "install_git_filter", "is_clean",
           "main", "pre_save_hook", "shipped_dir"]

if __name__ == "__main__":
    raise SystemExit(main())
