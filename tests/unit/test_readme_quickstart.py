"""The README's quickstart works as written (issue 22, items 5 and 10).

Step 1's install line must install everything the quickstart client imports (it used to install
only the sidecar, and the client failed with ``ModuleNotFoundError: openai``), and the ``check``
example must print what ``policy-sidecar check`` really prints for that file today.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _quickstart_install_requirements() -> set[str]:
    """Distribution names the first `pip install` of the quickstart's step 1 installs."""
    first = _blocks(_section("Quickstart"), "bash")[0]
    line = next(ln for ln in first.splitlines() if "pip install" in ln)
    target = shlex.split(line.split("&&")[0])[-1]  # e.g. .[demo]
    match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
    assert match, f"step 1 should install the project itself, got {target!r}"
    extras = match.group(1).split(",") if match.group(1) else []
    project = PYPROJECT["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return {_norm(Requirement(r).name) for r in reqs}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party_imports(source: str) -> set[str]:
    """Top-level modules the code imports that are neither stdlib nor this project."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    own = {"proxy", "plugins", "policies"}
    return {n for n in names if n not in sys.stdlib_module_names and n not in own and n != "__future__"}


def test_step_one_installs_what_the_quickstart_client_imports() -> None:
    installed = _quickstart_install_requirements()
    client_code = _blocks(_section("Quickstart"), "python")
    sources = [*client_code, (ROOT / "examples" / "openai_client.py").read_text()]
    imports = set().union(*(_third_party_imports(src) for src in sources))
    assert "openai" in imports  # the README's own example, as a sanity check of the parser
    dists = metadata.packages_distributions()
    for module in sorted(imports):
        providers = {_norm(d) for d in dists.get(module, [module])}
        assert providers & installed, (
            f"the quickstart client imports {module!r} but step 1 (`pip install ...`) does not install it; "
            f"installed: {sorted(installed)}"
        )


def _check_examples() -> list[tuple[str, list[str]]]:
    """(command, shown output lines) for every `policy-sidecar check` example in the README: the
    command line (optionally after `$ `) and the lines under it, up to a blank line."""
    found = []
    for block in re.findall(r"```\w*\n(.*?)```", README, flags=re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            command = line.removeprefix("$ ").strip()
            if not re.fullmatch(r"policy-sidecar check \S+\.yaml", command):
                continue
            shown = []
            for out in lines[i + 1 :]:
                if not out.strip() or out.startswith("$ ") or out.startswith("policy-sidecar"):
                    break
                shown.append(out.removeprefix("# ").strip())
            found.append((command, shown))
    return found


def test_the_readme_check_examples_print_what_check_prints() -> None:
    """Run each README `check` example and compare what it printed, revision included."""
    examples = _check_examples()
    assert len(examples) >= 2, examples  # strict.yaml (policies section), openai.yaml (secrets)
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for command, shown in examples:
        r = subprocess.run(
            [sys.executable, "-m", "proxy", *shlex.split(command)[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**env, "PYTHONPATH": path},
        )
        assert r.returncode == 0, r.stderr
        printed = r.stdout.strip().splitlines()
        assert shown == printed, f"update the README's `{command}` example to print:\n" + "\n".join(printed)
