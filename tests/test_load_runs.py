"""load_runs reads every run of a tree, whatever state it was left in."""

import json

import pytest

from dynamics.io import RunDir, load_runs, lock_run_dir, to_frame


def make_run(path, status=None, steps=3, config=None):
    run = RunDir(path)
    run.write_config(config or {"seed": 0})
    run.log([{"step": s, "loss": 1.0 / (s + 1)} for s in range(steps)])
    if status is not None:
        run.write_summary({"status": status, "steps_completed": steps}, final=False)
    run.close()
    return run


def test_a_tree_with_a_truncated_line_a_killed_and_a_running_run(tmp_path):
    for i in (0, 1, 2, 10):
        make_run(tmp_path / str(i), "finished", config={"seed": i})
    with open(tmp_path / "2" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "loss": 0')  # a run killed while writing a line
    make_run(tmp_path / "3", "running")  # its process died: no lock held
    make_run(tmp_path / "4")  # killed before any summary
    running = make_run(tmp_path / "5", "running", steps=2)
    held = lock_run_dir(tmp_path / "5")
    (tmp_path / "6").mkdir()
    (tmp_path / "6" / "summary.json").write_text('{"status": "fin')  # truncated summary
    try:
        with pytest.warns(RuntimeWarning) as caught:
            rows = load_runs(tmp_path, metrics=True)
    finally:
        held.close()
        running.write_summary({"status": "finished"})
    names = [r["run_dir"].rsplit("/", 1)[-1] for r in rows]
    assert names == ["0", "1", "2", "3", "4", "5", "10"]  # natural order; 6 skipped
    status = {n: r["status"] for n, r in zip(names, rows)}
    assert status == {"0": "finished", "1": "finished", "2": "finished", "3": "killed",
                      "4": "killed", "5": "running", "10": "finished"}
    assert [m["step"] for m in rows[2]["metrics"]] == [0, 1, 2]
    assert rows[3]["steps_completed"] == 2 and rows[5]["steps_completed"] == 1
    messages = " ".join(str(w.message) for w in caught)
    assert "2/metrics.jsonl:4: skipped a line" in messages and "6/summary.json" in messages


def test_to_frame_makes_a_table_or_says_how_to_install_pandas(tmp_path):
    make_run(tmp_path / "0", "finished")
    rows = load_runs(tmp_path)
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install -e '\.\[pandas\]'"):
            to_frame(rows)
    else:
        assert list(to_frame(rows)["status"]) == ["finished"]
    assert json.loads((tmp_path / "0" / "summary.json").read_text())["status"] == "finished"


def test_the_points_of_an_interrupted_sweep_are_interrupted(tmp_path):
    parent = RunDir(tmp_path)
    make_run(tmp_path / "points" / "0", steps=4)
    make_run(tmp_path / "points" / "1", steps=4)
    parent.write_summary({"status": "interrupted", "signal": "SIGTERM"})
    rows = load_runs(tmp_path)
    assert [(r["status"], r["steps_completed"]) for r in rows] == [("interrupted", 3)] * 2
