"""A bad data root or a value a model refuses ends like every other bad input: one line naming the
path or the setting, exit status 2, and no run folder left behind."""

import pytest

from tests.conftest import run, train_in_process


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (("data=brats", "data.root={missing}"), "error: {missing}: data root is not a directory"),
        (("data=brats", "data.root={empty}"), "error: {empty}: "),
        (("model.gan_mode=wasserstein",), "error: model: gan_mode must be one of"),
        (("lambda=-1",), "error: model: lambda (-1.0) and gamma (0.0) must be non-negative"),
        (("model=brainclustering", "model.macro=1"), "error: model: "),
        (("source=[t1,t2]",), "error: model: the target t2 is also a source (['t1', 't2'])"),
        (("source=[t1,dwi]",), "error: model: unknown contrast(s) ['dwi']; the contrasts are"),
        (("source=[t1,t1]", "target=flair"), "error: model: source lists a contrast twice: ['t1', 't1']"),
        (("model=complementary", "source=[flair]"), "error: model: Complementary inverts the T1, which is not among"),
        (("model=intensity_lookup", "source=[t1,flair]"), "error: model: IntensityLookup maps one source contrast"),
        (
            ("standardisation=decibels",),
            "error: model: standardisation must be one of ('percentile', 'zscore', 'nyul')",
        ),
    ],
)
def test_bad_data_root_or_model_value_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, overrides, message):
    """In this process (train.py's main, as the script runs it); the subprocess test below checks
    that the status and the line reach the shell."""
    paths = {"missing": tmp_path / "nowhere", "empty": tmp_path / "empty"}
    paths["empty"].mkdir()
    run_dir = tmp_path / "run"
    arguments = [o.format(**paths) for o in overrides]
    status = train_in_process(monkeypatch, *arguments, f"hydra.run.dir={run_dir}")
    stderr = capsys.readouterr().err
    assert status == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(**paths)), stderr
    assert not run_dir.exists()


def test_a_bad_value_reaches_the_shell_as_one_line_and_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    result = run("train.py", "model.gan_mode=wasserstein", f"hydra.run.dir={run_dir}", check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: model: gan_mode must be one of ('vanilla', 'lsgan', 'hinge'), got 'wasserstein'"
    ]
    assert not run_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+model.data.nonsense=1", "error: model: PatchDataModule.__init__() got an unexpected keyword argument"),
        ("model.data.flip=sideways", "error: model: flip must be one of ('lr_ap', 'lr', 'none'), got 'sideways'"),
        ("+trainer.nonsense=1", "error: model: trainer: Trainer.__init__() got an unexpected keyword"),
        ("trainer.strategy=nonsense", "error: model: trainer: You selected an invalid strategy name"),
        ("+generator.nonsense=1", "error: model: UNetGenerator.__init__() got an unexpected keyword argument"),
    ],
)
def test_a_bad_trainer_data_or_network_option_stops_the_run_before_the_data_is_read(tmp_path, override, message):
    """The data root does not exist: had the data been read first, that would be the error."""
    run_dir = tmp_path / "run"
    result = run("train.py", "+experiment=pix2pix_cpu", "data=brats", f"data.root={tmp_path / 'nowhere'}",
                 override, f"hydra.run.dir={run_dir}", check=False)  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert not run_dir.exists()
