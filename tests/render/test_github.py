"""``--format github``: workflow-command annotations at the root cause's line, a notice per
other drifted tensor, the markdown report in the job summary; the default under Actions."""

from __future__ import annotations

from ..conftest import EXAMPLES, run_cli


def test_github_annotations_on_a_real_drift(zero_bias_drift, tmp_path):
    before, after = zero_bias_drift
    summary = tmp_path / "summary.md"
    proc = run_cli(
        "diff", str(before), str(after), "--format", "github",
        env={"GITHUB_STEP_SUMMARY": str(summary)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    commands = [ln for ln in lines if ln.startswith("::")]
    assert commands[0].startswith("::error file=sitecustomize.py,line=9,")
    assert "title=initaudit%3A hid1.bias (recipe-drift)::init uniform_(" in commands[0]
    notices = [ln for ln in commands if ln.startswith("::notice ")]
    names = [ln.split("title=initaudit%3A ", 1)[1].split(" ", 1)[0] for ln in notices]
    assert names == ["hid2.weight", "hid2.bias", "oupt.weight", "oupt.bias"]
    assert len(commands) == 5  # nothing for the one identical tensor
    # the text report follows the annotations, as a local run prints it
    assert any(ln.startswith("DRIFT: 5 of 6 tensors differ") for ln in lines)
    md = summary.read_text()
    assert md.startswith("### initaudit diff: `Net`") and "**root cause hid1.bias" in md


def test_github_is_the_default_under_actions_and_identical_says_nothing(tmp_path):
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    proc = run_cli("check", str(EXAMPLES / "mlp.py"), "-q", env=env, cwd=EXAMPLES.parent)
    assert proc.returncode == 0, proc.stderr
    assert not [ln for ln in proc.stdout.splitlines() if ln.startswith("::")]
    assert proc.stdout.startswith("IDENTICAL: all 6 tensors bitwise identical")
    assert "✅ IDENTICAL" in summary.read_text()
    # an explicit --format wins over the Actions default
    proc = run_cli("check", str(EXAMPLES / "mlp.py"), "-q", "--format", "json", env=env,
                   cwd=EXAMPLES.parent)  # fmt: skip
    assert proc.stdout.lstrip().startswith("{")


def test_workflow_command_escaping():
    from initaudit.render.github import escape_data, escape_property, location

    assert escape_property("a:b,c%") == "a%3Ab%2Cc%25"
    assert escape_data("x\ny%") == "x%0Ay%25"
    assert location("models/gpt2/modeling_gpt2.py:120") == (
        "file=models/gpt2/modeling_gpt2.py,line=120,"
    )
    assert location(None) == ""


def test_diff_dir_under_actions_annotates_each_drifting_step(zero_bias_drift, tmp_path):
    import shutil

    before, after = zero_bias_drift
    for i, snap in enumerate((before, after)):
        (tmp_path / str(i)).mkdir()
        shutil.copy(snap, tmp_path / str(i))
        for values in snap.parent.glob(snap.stem + "*.safetensors"):
            shutil.copy(values, tmp_path / str(i))
    summary = tmp_path / "summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    proc = run_cli("diff", str(tmp_path), env=env)
    assert proc.returncode == 1, proc.stderr
    commands = [ln for ln in proc.stdout.splitlines() if ln.startswith("::")]
    assert commands[0].startswith("::error file=sitecustomize.py,line=9,")
    assert "title=initaudit 2.13.0+cpu → 2.13.0+cpu%3A hid1.bias (recipe-drift)::" in commands[0]
    assert len(commands) == 5
    assert "upgrade step" in summary.read_text()
