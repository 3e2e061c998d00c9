"""Resumable steps (deploy.steps) and deploy.compress's recipe on them: a re-run skips what ran
with the same settings, re-runs a step whose settings changed and every step after it (saying
which setting changed), and resumes a stopped step in its folder unless it ran with others.
No step trains: the command runner is replaced, or the command is a tiny standard module."""
import dataclasses
import json
import os

import pytest

from deploy import compress, steps

FAILED = 1
CHECKPOINT = "checkpoint"  # what a fake tool leaves in its folder, as a killed run would
RECORD = {"target_sparsity": 0.6, "nested": {"rank": 4}}


class FakeTools:
    """Stands in for steps.run_command: records which steps ran, and whether each found a
    checkpoint of an earlier run in its folder (it resumed), then leaves one."""

    def __init__(self):
        self.ran, self.resumed, self.fail = [], [], False
        self.folders = {}  # step name -> folder, filled as the steps are made

    def __call__(self, command, step):
        folder = self.folders[step]
        self.ran.append(step)
        self.resumed.append(os.path.exists(os.path.join(folder, CHECKPOINT)))
        with open(os.path.join(folder, CHECKPOINT), "w") as handle:
            handle.write(" ".join(command))
        return FAILED if self.fail else 0


@pytest.fixture
def tools(monkeypatch):
    fake = FakeTools()
    monkeypatch.setattr(steps, "run_command", fake)
    return fake


def fake_step(tools, folder, record=RECORD, upstream=None):
    tools.folders[os.path.basename(folder)] = folder
    return steps.Step(str(folder), "fake.tool", lambda: ["--flag"], record, upstream)


def lines(capsys):
    return capsys.readouterr().out.splitlines()


def test_a_step_records_its_settings_and_is_skipped_when_they_are_the_same(tools, tmp_path,
                                                                           capsys):
    step = fake_step(tools, tmp_path / "1_step")
    digest = steps.run_step(step)
    done = json.loads((tmp_path / "1_step" / steps.STEP_DONE_FILE).read_text())
    assert done["settings"] == RECORD and done["digest"] == digest
    assert done["commands"] == ["-m fake.tool --flag"] and done["seconds"] >= 0
    assert not (tmp_path / "1_step" / steps.STEP_STARTED_FILE).exists()
    reordered = dict(reversed(list(RECORD.items())))  # the digest ignores key order
    assert steps.run_step(dataclasses.replace(step, record=reordered)) == digest
    assert tools.ran == ["1_step"]
    assert lines(capsys)[-1] == "1_step: already done, skipped"


def test_changed_settings_remove_the_folder_and_name_the_change(tools, tmp_path, capsys):
    step = fake_step(tools, tmp_path / "1_step")
    steps.run_step(step)
    (tmp_path / "1_step" / "stale.txt").write_text("from the old settings")
    changed = {**RECORD, "target_sparsity": 0.5, "nested": {"rank": 8}}
    steps.run_step(dataclasses.replace(step, record=changed))
    assert ("1_step: settings changed (nested.rank 4 -> 8, target_sparsity 0.6 -> 0.5): "
            "re-running it and the steps after it") in lines(capsys)
    assert not (tmp_path / "1_step" / "stale.txt").exists()
    assert tools.resumed == [False, False]


def test_a_changed_upstream_re_runs_the_step(tools, tmp_path, capsys):
    step = fake_step(tools, tmp_path / "2_step", upstream="a" * 64)
    steps.run_step(step)
    steps.run_step(dataclasses.replace(step, upstream="b" * 64))
    assert ("2_step: settings changed (the step it starts from changed): re-running it and "
            "the steps after it") in lines(capsys)
    assert tools.ran == ["2_step", "2_step"]


def test_a_stopped_step_resumes_with_the_same_settings_and_restarts_with_others(
        tools, tmp_path, capsys):
    step = fake_step(tools, tmp_path / "3_prune")
    tools.fail = True  # killed mid-way: its checkpoint and step.started.json, no step.json
    with pytest.raises(steps.StepFailed, match="step 3_prune failed"):
        steps.run_step(step)
    assert (tmp_path / "3_prune" / steps.STEP_STARTED_FILE).exists()
    assert not (tmp_path / "3_prune" / steps.STEP_DONE_FILE).exists()

    with pytest.raises(steps.StepFailed):  # the same settings: it resumes in its folder
        steps.run_step(step)
    assert tools.resumed == [False, True]
    assert "3_prune: running (resuming what a stopped run left)" in lines(capsys)

    tools.fail = False  # other settings: the stopped run's folder goes, the step starts fresh
    steps.run_step(dataclasses.replace(step, record={**RECORD, "target_sparsity": 0.5}))
    assert tools.resumed == [False, True, False]
    assert ("3_prune: settings changed (target_sparsity 0.6 -> 0.5): re-running it and the "
            "steps after it") in lines(capsys)


def test_a_folder_without_records_is_resumed_never_removed(tools, tmp_path):
    (tmp_path / "1_step").mkdir()
    (tmp_path / "1_step" / CHECKPOINT).write_text("an earlier version's stopped run")
    steps.run_step(fake_step(tools, tmp_path / "1_step"))
    assert tools.resumed == [True]


def test_a_step_json_without_settings_is_re_run(tools, tmp_path, capsys):
    (tmp_path / "1_step").mkdir()
    (tmp_path / "1_step" / steps.STEP_DONE_FILE).write_text(json.dumps({"commands": ["x"]}))
    steps.run_step(fake_step(tools, tmp_path / "1_step"))
    assert tools.ran == ["1_step"]
    assert f"1_step: settings changed ({steps.NOT_RECORDED}): " in lines(capsys)[0]


def test_a_real_command_runs_in_the_step_folder(tmp_path):
    source = tmp_path / "input.json"
    source.write_text('{"b": 1}')
    folder = tmp_path / "1_copy"
    step = steps.Step(str(folder), "json.tool", lambda: [source, folder / "output.json"],
                      {"source": str(source)})
    steps.run_step(step)
    assert json.loads((folder / "output.json").read_text()) == {"b": 1}
    assert (folder / steps.STEP_DONE_FILE).exists()


# deploy.compress's recipe, its tools replaced: which steps each settings change re-runs.

def compress_settings(output_dir, *flags):
    args = compress.build_parser().parse_args(
        ["--task_name=SST-2", "--data_dir=data", "--model_dir=pretrained",
         f"--output_dir={output_dir}", *flags])
    return compress.CompressSettings.from_namespace(args)


@pytest.fixture
def recipe_tools(tools, monkeypatch, tmp_path):
    """The real layout and records; no flags read a model, no finish, no validation."""
    plan_step = compress.Plan.step

    def step(plan, entry, upstream):
        tools.folders[entry.folder] = plan.folder(entry.folder)
        return dataclasses.replace(plan_step(plan, entry, upstream), flags=lambda: [],
                                   finish=None)

    monkeypatch.setattr(compress.Plan, "step", step)
    monkeypatch.setattr(compress, "validate", lambda settings: None)
    return tools


def test_a_second_run_with_the_same_settings_skips_every_step(recipe_tools, tmp_path, capsys):
    compress.run_recipe(compress_settings(tmp_path))
    assert recipe_tools.ran == list(compress.STEPS)
    capsys.readouterr()
    compress.run_recipe(compress_settings(tmp_path, "--latency_iterations=50"))  # timing only
    assert recipe_tools.ran == list(compress.STEPS)
    out = lines(capsys)
    assert [line for line in out if line.endswith("already done, skipped")] == [
        f"{step}: already done, skipped" for step in compress.STEPS]


def test_a_new_target_sparsity_re_runs_pruning_and_the_steps_after_it(recipe_tools, tmp_path,
                                                                      capsys):
    compress.run_recipe(compress_settings(tmp_path, "--target_sparsity=0.6"))
    recipe_tools.ran.clear()
    capsys.readouterr()
    compress.run_recipe(compress_settings(tmp_path, "--target_sparsity=0.5"))
    after = compress.STEPS[compress.STEPS.index(compress.PRUNE_DIR):]
    assert recipe_tools.ran == list(after)
    out = lines(capsys)
    for step in (compress.FINE_TUNE_DIR, compress.FACTORIZED_DIR):
        assert f"{step}: already done, skipped" in out
    assert (f"{compress.PRUNE_DIR}: settings changed (target_sparsity 0.6 -> 0.5): re-running "
            "it and the steps after it") in out
    for step in after[1:]:
        assert (f"{step}: settings changed (the step it starts from changed): re-running it "
                "and the steps after it") in out
    done = json.loads((tmp_path / compress.PRUNE_DIR / compress.STEP_DONE_FILE).read_text())
    assert done["settings"]["target_sparsity"] == 0.5 and "resume" not in done["settings"]
    assert "latency_iterations" not in done["settings"]


def test_a_new_learning_rate_re_runs_everything(recipe_tools, tmp_path, capsys):
    compress.run_recipe(compress_settings(tmp_path, f"--stop_after={compress.PRUNE_DIR}"))
    recipe_tools.ran.clear()
    compress.run_recipe(compress_settings(tmp_path, "--learning_rate=1e-4",
                                          f"--stop_after={compress.FACTORIZED_DIR}"))
    assert recipe_tools.ran == [compress.FINE_TUNE_DIR, compress.FACTORIZED_DIR]
    assert (f"{compress.FINE_TUNE_DIR}: settings changed (learning_rate 5e-05 -> 0.0001): "
            "re-running it and the steps after it") in lines(capsys)
