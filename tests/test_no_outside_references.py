"""Nothing the product ships points outside the repository (issue 26 item 9): a clone has no
`../shared`, so a "SPEC 9" in `--help`, in `/openapi.json`, in a shipped config comment or in
the documentation sends a user to a page they cannot open. What they need is in docs/.

The surfaces checked are what a user reads: `gateway --help` and every subcommand's, the
OpenAPI document a running gateway serves, every text file under config/, deploy/, docs/ and
README.md, and the product's code (gateway/, models/, loadtests/, the Makefile, the Dockerfile),
where its messages are written. The tests' own docstrings are not checked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.settings import load_settings
from tests.conftest import ROOT, ConfigWriter

OUTSIDE = re.compile(r"\bSPEC\b|SPEC\.md|\.\./shared\b|/tmp/gateway-bench-|/pytest-of-")
"""A citation of the contract that lives outside the repository, or a path into its folder; or
a path of one run on one machine (a benchmark's or a test's temporary folder, as a log line
pasted with a table carries)."""

SHIPPED_FOLDERS = ("config", "deploy", "docs")
PRODUCT_CODE = ("gateway", "models", "loadtests", "Makefile", "Dockerfile", "pyproject.toml")
"""What the product runs: its messages (errors, logs, help) are written in it, and its
docstrings are what a reader of the code follows."""


def citations(text: str, where: str) -> list[str]:
    """`where:line: text` of every line of `text` that points outside the repository."""
    return [f"{where}:{number}: {line.strip()}"
            for number, line in enumerate(text.splitlines(), start=1) if OUTSIDE.search(line)]


def shipped_text_files(folders: tuple[str, ...] = SHIPPED_FOLDERS) -> list[Path]:
    """Every text file under these folders (or these files), UTF-8 only: images and ONNX
    graphs are skipped."""
    files = []
    for folder in folders:
        top = ROOT / folder
        for path in sorted(top.rglob("*")) if top.is_dir() else [top]:
            if path.is_file() and "__pycache__" not in path.parts:
                try:
                    path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue
                files.append(path)
    return files


def help_text(*command: str) -> str:
    """What `gateway ... --help` prints, run as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "gateway", *command, "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def subcommands() -> list[str]:
    """The subcommands `gateway --help` lists (`{serve,check,...}`), so a new one is checked."""
    listed = re.search(r"\{([a-z,]+)\}", help_text())
    assert listed is not None, "gateway --help lists no subcommands"
    return listed.group(1).split(",")


def test_the_self_check_finds_what_it_looks_for() -> None:
    text = ("ok\nsee SPEC 9\nSPEC section 4.\n../shared/SPEC.md\nspecification\nSPECIAL\n"
            "/tmp/gateway-bench-ho2b7mck/feature-models/m/2/reference.json: few rows")
    assert [c.split(":")[1] for c in citations(text, "x")] == ["2", "3", "4", "7"]


def test_every_help_text_stays_inside_the_repository() -> None:
    found = citations(help_text(), "gateway --help")
    for command in subcommands():
        found += citations(help_text(command), f"gateway {command} --help")
    assert found == [], "--help cites what a clone does not have; cite docs/ instead:\n" + \
        "\n".join(found)


def test_the_openapi_document_stays_inside_the_repository(write_config: ConfigWriter) -> None:
    app = create_app(load_settings(write_config()), admin_token="t0ken")  # admin paths too
    with TestClient(app) as client:
        answer = client.get("/openapi.json")
    assert answer.status_code == 200
    pretty = orjson.dumps(answer.json(), option=orjson.OPT_INDENT_2).decode()
    found = citations(pretty, "/openapi.json")
    assert found == [], "/openapi.json cites what a clone does not have:\n" + "\n".join(found)


def test_shipped_config_deploy_and_docs_stay_inside_the_repository() -> None:
    files = shipped_text_files()
    assert {"config/gateway.yaml", "config/routing.yaml", "docs/README.md"} <= {
        str(path.relative_to(ROOT)) for path in files}
    found = [c for path in files
             for c in citations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == [], "shipped files cite what a clone does not have:\n" + "\n".join(found)


def test_the_readme_stays_inside_the_repository() -> None:
    found = citations((ROOT / "README.md").read_text(encoding="utf-8"), "README.md")
    assert found == [], "README.md cites what a clone does not have; cite docs/ instead:\n" + \
        "\n".join(found)


def test_the_product_code_stays_inside_the_repository() -> None:
    """Error messages, log lines and help are written in the code, so it cites docs/ too."""
    files = shipped_text_files(PRODUCT_CODE)
    assert ROOT / "gateway" / "__main__.py" in files
    found = [c for path in files
             for c in citations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == [], "the code cites what a clone does not have; cite docs/ instead:\n" + \
        "\n".join(found)


DOCS_PAGE = re.compile(r"\bdocs/[\w./-]*\w\.md\b")
"""A docs/ page named in text, as messages and comments name them (`see docs/routing.md`)."""
MARKDOWN_LINK = re.compile(r"\]\((?P<target>[^)\s#]*)(?:#(?P<anchor>[^)\s]+))?\)")
def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def dangling(path: Path) -> list[str]:
    """`where:line: target` of each docs/ page named and each local Markdown link in `path`
    that leads nowhere: no such file, or no such heading in it."""
    found = []
    where = str(path.relative_to(ROOT))
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        targets = [(ROOT / page, None) for page in DOCS_PAGE.findall(line)]
        if path.suffix == ".md":
            targets += [((path.parent / link["target"]) if link["target"] else path,
                         link["anchor"]) for link in MARKDOWN_LINK.finditer(line)
                        if not re.match(r"\w+:", link["target"])]
        for target, wanted in targets:
            if not target.resolve().is_file():
                found.append(f"{where}:{number}: {target.relative_to(ROOT)} does not exist")
            elif wanted and wanted not in {anchor(h) for h in re.findall(
                    r"^#+ (.*)$", target.read_text(encoding="utf-8"), re.MULTILINE)}:
                found.append(f"{where}:{number}: {target.name} has no heading #{wanted}")
    return list(dict.fromkeys(found))  # a page both named and linked on one line: once


def test_the_self_check_finds_dangling_pages(tmp_path: Path) -> None:
    assert anchor("`gateway rollout`") == "gateway-rollout"
    assert anchor("Requests and routing") == "requests-and-routing"
    assert dangling(ROOT / "docs" / "README.md") == []
    assert dangling(ROOT / "gateway" / "__main__.py") == []


def test_every_page_and_link_the_documents_name_exists() -> None:
    files = [ROOT / "README.md", *shipped_text_files()]
    found = [problem for path in files for problem in dangling(path)]
    assert found == [], "links and pages that lead nowhere:\n" + "\n".join(found)


def test_every_docs_page_the_code_names_exists() -> None:
    found = [problem for path in shipped_text_files(PRODUCT_CODE) for problem in dangling(path)]
    assert found == [], "the code names pages that do not exist:\n" + "\n".join(found)
