"""Progress lines for jobs nobody watches (nohup, SLURM, CI), and in-place lines on a terminal."""

import io

import pytest

from common.progress import Progress, default_every, duration, track


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (7.4, "7s"), (65, "1:05"), (3723, "1:02:03")])
def test_duration(seconds, text):
    assert duration(seconds) == text


def test_a_log_gets_the_first_every_nth_and_last_item():
    stream = io.StringIO()
    progress = Progress(10, "iteration", every=4, stream=stream, interactive=False)
    for done in range(1, 11):
        progress.update(done, f"loss {done}")
    lines = stream.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "iteration 1/10 (10%)",
        "iteration 4/10 (40%)",
        "iteration 8/10 (80%)",
        "iteration 10/10 (100%)",
    ]
    assert lines[1].split(" | ")[1] == "loss 4" and lines[-1].endswith("0s left")
    assert all("/s" in line or "s/it" in line for line in lines)


def test_a_resumed_run_counts_from_where_it_stopped():
    stream = io.StringIO()
    progress = Progress(100, "iteration", every=50, start=40, stream=stream, interactive=False)
    progress.update(41)
    progress.update(50)
    assert [line.split(" | ")[0] for line in stream.getvalue().splitlines()] == [
        "iteration 41/100 (41%)",
        "iteration 50/100 (50%)",
    ]


def test_a_terminal_gets_one_line_redrawn_in_place():
    stream = io.StringIO()
    progress = Progress(3, "case", stream=stream, interactive=True)
    for done in (1, 2, 3):
        progress.update(done)
    text = stream.getvalue()
    assert text.startswith("\r\033[K") and text.endswith("\n") and text.count("\n") == 1
    assert "case 3/3 (100%)" in text


def test_track_yields_every_item_and_reports_to_standard_error(capsys):
    assert list(track(iter(range(5)), "item", total=5, every=2)) == [0, 1, 2, 3, 4]
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" | ")[0] for line in lines] == [
        "item 1/5 (20%)",
        "item 2/5 (40%)",
        "item 4/5 (80%)",
        "item 5/5 (100%)",
    ]


def test_default_every_gives_about_twenty_lines():
    assert default_every(1000) == 50 and default_every(7) == 1
