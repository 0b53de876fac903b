"""Issue 22, migration: `kflowgen import determined` on example Determined AI configs, in a scratch copy of the example
repository: exit code, the spec written, and what stderr says did not carry over, together."""
from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from conftest import mutations, tree_hash
from kflowgen.cli import app

GRID = """\
name: resnet_grid
description: ResNet-50 grid, moved from Determined
entrypoint: python3 train.py --data /workspace/data
hyperparameters:
  epochs: 10
  lr: {type: log, base: 10, minval: -3, maxval: -2, count: 2}
  dropout: {type: double, minval: 0.3, maxval: 0.5, count: 2}
searcher:
  name: grid
  metric: val_loss
  smaller_is_better: true
  max_length: {epochs: 10}
resources: {slots_per_trial: 1, resource_pool: a100-pool}
environment:
  image: determinedai/pytorch-ngc:0.38.0
  environment_variables: [NCCL_DEBUG=WARN]
max_restarts: 1
bind_mounts:
  - {host_path: /data, container_path: /data}
checkpoint_storage: {type: shared_fs, host_path: /ckpt}
records_per_epoch: 50000
"""

RANDOM = """\
name: bert-search
entrypoint: python3 finetune.py
hyperparameters:
  optimizer:
    lr: {type: log, minval: -5, maxval: -3}
  warmup_steps: {type: int, minval: 0, maxval: 1000}
  batch_size: {type: categorical, vals: [16, 32]}
searcher: {name: random, metric: accuracy, smaller_is_better: false, max_trials: 6, max_concurrent_trials: 4}
resources: {slots_per_trial: 1}
environment:
  image: {cpu: "registry.example.com/ml/bert:1.0-cpu", cuda: "registry.example.com/ml/bert:1.0-cuda"}
reproducibility: {experiment_seed: 7}
"""

ASHA = """\
name: bert-asha
entrypoint: python3 -m determined.launch.torch_distributed python3 finetune.py
hyperparameters:
  lr: {type: double, minval: 0.0001, maxval: 0.001}
searcher:
  name: adaptive_asha
  metric: loss
  max_trials: 500
  max_length: {batches: 1000}
  max_concurrent_trials: 1
  mode: aggressive
resources: {slots_per_trial: 2}
"""

SINGLE = """\
name: stats
entrypoint: model_def:StatsTrial
hyperparameters:
  global_batch_size: 512
  optimizer: {type: const, val: adam}
searcher: {name: single, metric: loss, max_length: {batches: 100}}
resources: {slots_per_trial: 0}
max_restarts: 3
"""


def run(repo, config, *args, env=None):
    result = CliRunner().invoke(app, ["import", "determined", str(config), "-C", str(repo), *args], env=env)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def spec(repo, rel):
    text = (repo / rel).read_text()
    assert text.startswith("# yaml-language-server: $schema=../../../schemas/experiment.schema.json\n")
    return yaml.safe_load(text)


def wrote(rel):
    return (f"wrote {rel}: copy your code to its workdir on the team NAS (hyperparameters reach your command as "
            f"key=value arguments), check cpu and memory, then run `kflowgen explain {rel}` and `kflowgen validate`\n"
            "kflowgen: ok\n")


@pytest.fixture
def config(tmp_path):
    def write(text, name="det.yaml"):
        (tmp_path / name).write_text(text)
        return tmp_path / name
    return write


def test_grid_becomes_a_grid_sweep_and_says_what_stayed_behind(example_repo, config):
    path = config(GRID)
    code, out, err = run(example_repo, path, "--team", "vision", "--gpu-type", "a100")
    rel = "specs/experiments/vision/resnet-grid.yaml"
    assert (code, out) == (0, wrote(rel))
    assert spec(example_repo, rel) == {
        "team": "vision", "name": "resnet-grid", "description": "ResNet-50 grid, moved from Determined",
        "run": "python3 train.py --data /workspace/data", "workdir": "projects/resnet-grid",
        "hyperparameters": {"epochs": 10}, "sweep": {"grid": {"lr": [0.001, 0.01], "dropout": [0.3, 0.5]}},
        "resources": {"cpu": 4, "memory": "16Gi", "gpu": {"type": "a100", "count": 1}},
        "environments": ["dev"], "retries": 1, "env": {"NCCL_DEBUG": "WARN"}}
    assert err == "".join(f"{path}:{line}\n" for line in (
        "1:1: name 'resnet_grid' is 'resnet-grid' here: kflowgen names are lower-case letters, digits and '-'",
        "10:3: searcher.metric val_loss: not carried over: kflowgen reads no metrics and runs every trial: compare "
        "trials where your script reports them (e.g. MLflow)",
        "12:3: searcher.max_length {epochs: 10}: not carried over: kflowgen does not count training length: pass it "
        "as a hyperparameter your script reads",
        "13:33: resources.resource_pool a100-pool: not carried over: kflowgen places trials by GPU type, on the nodes "
        "the platform gives that type",
        "15:3: environment.image: not carried over: image 'determinedai/pytorch-ngc:0.38.0' is not from an allowed "
        "registry; the team's notebook image runs the trials (push yours to an allowed registry and set image:)",
        "18:1: bind_mounts [{container_path: /data, host_path: /data}]: not carried over: the team NAS is mounted at "
        "/workspace in every trial: put the data there",
        "20:1: checkpoint_storage {host_path: /ckpt, type: shared_fs}: not carried over: kflowgen keeps no "
        "checkpoints for you: write them on the team NAS, e.g. under out/$KFLOWGEN_TRIAL",
        "21:1: records_per_epoch 50000: not carried over: kflowgen does not count training length: your script "
        "stops when it is done"))
    before = tree_hash(example_repo)  # never overwritten
    code, out, err = run(example_repo, path, "--team", "vision", "--gpu-type", "a100")
    assert (code, err) == (1, "") and out.startswith(f"{rel}: error [KF321] experiment 'resnet-grid' of team "
                                                     "'vision' already exists\n    fix: edit the existing file")
    assert tree_hash(example_repo) == before


def test_random_keeps_ranges_seed_and_concurrency(example_repo, config):
    path = config(RANDOM)
    code, out, err = run(example_repo, path, "--team", "nlp", "--gpu-type", "t4")
    rel = "specs/experiments/nlp/bert-search.yaml"
    assert (code, out) == (0, wrote(rel)), out
    assert spec(example_repo, rel) == {
        "team": "nlp", "name": "bert-search", "run": "python3 finetune.py", "workdir": "projects/bert-search",
        "image": "registry.example.com/ml/bert:1.0-cuda",
        "sweep": {"random": {"seed": 7, "trials": 6, "params": {
            "optimizer.lr": {"min": 1e-05, "max": 0.001, "log": True},
            "warmup_steps": {"min": 0, "max": 1000, "integer": True}, "batch_size": [16, 32]}}},
        "parallelism": 4, "resources": {"cpu": 4, "memory": "16Gi", "gpu": {"type": "t4", "count": 1}},
        "environments": ["dev"]}
    assert err == (f"{path}:8:26: searcher.metric accuracy: not carried over: kflowgen reads no metrics and runs every "
                   "trial: compare trials where your script reports them (e.g. MLflow)\n")


def test_adaptive_asha_is_a_random_sweep_that_runs_every_trial_to_the_end(example_repo, config):
    path = config(ASHA)
    code, out, err = run(example_repo, path, "--team", "nlp", "--gpu-type", "a100")
    rel = "specs/experiments/nlp/bert-asha.yaml"
    assert (code, out) == (0, wrote(rel)), out
    assert spec(example_repo, rel) == {
        "team": "nlp", "name": "bert-asha", "run": "python3 finetune.py", "workdir": "projects/bert-asha",
        "sweep": {"random": {"seed": 0, "trials": 256, "params": {"lr": {"min": 0.0001, "max": 0.001}}}},
        "parallelism": 1, "resources": {"cpu": 4, "memory": "16Gi", "gpu": {"type": "a100", "count": 2}}, "environments": ["dev"]}
    assert err.splitlines() == [f"{path}:{line}" for line in (
        "2:1: entrypoint: Determined's launcher 'python3 -m determined.launch.torch_distributed' was dropped; "
        "kflowgen starts the command itself (workers > 1: a distributed run, start it with torchrun)",
        "6:3: searcher adaptive_asha: kflowgen runs every trial to the end, with no early stopping: written as a "
        "random sweep of 256 trials (max_trials); budget that many full runs",
        "7:3: searcher.metric loss: not carried over: kflowgen reads no metrics and runs every trial: compare trials "
        "where your script reports them (e.g. MLflow)",
        "8:3: searcher.max_trials 500 is 256 here, kflowgen's most trials in one experiment",
        "9:3: searcher.max_length {batches: 1000}: not carried over: kflowgen does not count training length: pass "
        "it as a hyperparameter your script reads",
        "11:3: searcher.mode aggressive: not carried over: no kflowgen equivalent")]


def test_single_trial_class_on_cpu(example_repo, config):
    path = config(SINGLE)
    # no GPU: no GPU type to choose; the team is the notebook's, as `new experiment --from-notebook` takes it
    code, out, err = run(example_repo, path, env={"KFLOWGEN_TEAM": "recsys"})
    rel = "specs/experiments/recsys/stats.yaml"
    assert (code, out) == (0, wrote(rel)), out
    assert spec(example_repo, rel) == {
        "team": "recsys", "name": "stats", "run": "python -m model_def", "workdir": "projects/stats",
        "hyperparameters": {"global_batch_size": 512, "optimizer": "adam"},
        "resources": {"cpu": 4, "memory": "16Gi"}, "environments": ["dev"], "retries": 3}
    assert err.splitlines()[0] == (f"{path}:2:1: entrypoint model_def:StatsTrial is a Trial class, which only "
                                   "Determined's harness runs: run is `python -m model_def`; give that module a main "
                                   "that trains")


def test_what_is_imported_passes_validate(example_repo, config):
    """All four imports side by side pass the whole gate check: builds, schemas, policy, quota."""
    for text, args in ((GRID, ("--team", "vision", "--gpu-type", "a100")), (RANDOM, ("--team", "nlp", "--gpu-type",
                       "t4")), (ASHA, ("--team", "nlp", "--gpu-type", "a100")), (SINGLE, ("--team", "recsys"))):
        assert run(example_repo, config(text), *args)[0] == 0
    result = CliRunner().invoke(app, ["validate", "-C", str(example_repo), "--env", "dev", "--format", "text"])
    assert result.exit_code == 0 and result.stdout.endswith("kflowgen: ok\n"), result.stdout


def test_a_spec_that_does_not_fit_is_written_and_its_errors_said(example_repo, config):
    """16 slots: 2 workers of 8 GPUs, more than nlp's quota; the file stays, for the data scientist to edit."""
    code, out, err = run(example_repo, config(ASHA.replace("slots_per_trial: 2", "slots_per_trial: 16")),
                         "--team", "nlp", "--gpu-type", "a100")
    rel = "specs/experiments/nlp/bert-asha.yaml"
    assert code == 1 and f"{rel}:" in out and "[KF324] one trial needs 16 a100 GPU(s) (2 workers x 8)" in out, out
    assert out.endswith(f"wrote {rel}, which does not validate yet: fix what is listed above\n"
                        "kflowgen: 1 error, 0 warnings\n")
    assert spec(example_repo, rel)["workers"] == 2 and "slots_per_trial 16: 2 workers of 8 GPUs" in err


BAD = [
    (None, (), "{cfg}: error [KF101] cannot read the Determined config: No such file or directory\n"
               "    fix: give the path of its .yaml file\n"),
    ("a: [1\n", (), "{cfg}:2:1: error [KF101] invalid YAML: did not find expected ',' or ']' (while parsing a flow "
                    "sequence at line 1, column 4)\n    fix: close every '[' and '{{' you open\n"),
    ("- name: x\n", (), "{cfg}:1:1: error [KF104] the file's top level is not a mapping\n"
                        "    fix: a spec is a mapping of field: value lines\n"),
    ("name: x\nentrypoint: python3 train.py\nsearcher: {name: pbt}\nresources: {slots_per_trial: 0}\n", (),
     "{cfg}:3:18: error [KF706] searcher 'pbt' has no kflowgen equivalent\n"
     "    fix: use single, grid, random or adaptive_asha (imported as a random sweep)\n"),
    ("name: x\nentrypoint: python3 train.py\nhyperparameters:\n  lr: {type: lognormal, minval: 1, maxval: 2}\n"
     "searcher: {name: random, max_trials: 2}\nresources: {slots_per_trial: 0}\n", (),
     "{cfg}:4:14: error [KF706] hyperparameter lr has type 'lognormal', which Determined does not have\n"
     "    fix: use const, int, double, log or categorical\n"),
    ("name: x\nentrypoint: python3 train.py\nhyperparameters:\n  lr: {type: double, minval: 0.1, maxval: 0.5}\n"
     "searcher: {name: grid}\nresources: {slots_per_trial: 0}\n", (),
     "{cfg}:4:7: error [KF706] hyperparameter lr of type double needs a number for count\n"
     "    fix: for the grid searcher: minval, maxval and count (how many evenly spaced values to try)\n"),
    ("name: x\nentrypoint: python3 train.py\nsearcher: {name: single}\n", (),
     "{cfg}:1:1: error [KF707] slots_per_trial 1 asks for GPUs (Determined default) and the platform has several "
     "GPU types\n    fix: choose one with --gpu-type: a100, t4\n"),
    ("name: x\nentrypoint: python3 train.py\nresources: {slots_per_trial: 2}\n", ("--gpu-type", "h100"),
     "{cfg}:3:30: error [KF707] --gpu-type h100 is not a GPU type of the platform\n"
     "    fix: choose one with --gpu-type: a100, t4\n"),
    ("name: x\nentrypoint: python3 train.py\nsearcher: grid\nresources: {slots_per_trial: 0}\n", (),
     "{cfg}:3:11: error [KF706] searcher is not a mapping\n"
     "    fix: write searcher as field: value lines, as Determined does\n"),
    ("name: x\nsearcher: {name: single}\nresources: {slots_per_trial: 0}\n", (),
     "{cfg}:1:1: error [KF706] no entrypoint: kflowgen needs the command that trains\n"
     "    fix: entrypoint: python3 train.py\n"),
]


@pytest.mark.parametrize("text, args, expected", BAD)
def test_a_config_that_cannot_be_imported_is_a_located_error_and_writes_nothing(example_repo, config, tmp_path,
                                                                               text, args, expected):
    cfg = config(text) if text is not None else tmp_path / "missing.yaml"
    before = tree_hash(example_repo)
    code, out, err = run(example_repo, cfg, "--team", "vision", *args)
    assert (code, out, err) == (1, expected.format(cfg=cfg) + "kflowgen: 1 error, 0 warnings\n", "")
    assert tree_hash(example_repo) == before


def test_the_team_is_asked_for_when_the_repository_has_several(example_repo, config):
    cfg = config(SINGLE)
    code, out, err = run(example_repo, cfg)
    assert (code, out) == (1, f"{cfg}: error [KF707] which team runs it? the repository has 3 teams\n"
                              "    fix: give --team: nlp, recsys, vision\nkflowgen: 1 error, 0 warnings\n")


def test_no_config_crashes_the_importer(example_repo, tmp_path):
    """Every one-place change of the examples (a field removed, a value of another type, a list emptied, ...) gives
    exit 0 or 1, never an internal error; a spec written is removed before the next."""
    for changed in (mutations(yaml.safe_load(GRID)) + mutations(yaml.safe_load(ASHA)))[::2]:  # half: time
        (tmp_path / "det.yaml").write_text(yaml.safe_dump(changed))
        code, out, err = run(example_repo, tmp_path / "det.yaml", "--team", "vision", "--name", "x",
                             "--gpu-type", "a100")
        assert code in (0, 1), (changed, out)
        (example_repo / "specs/experiments/vision/x.yaml").unlink(missing_ok=True)
