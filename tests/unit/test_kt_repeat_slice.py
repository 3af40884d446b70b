"""experiments/reproduce_kt_assist2009/repeat_slice.py: multi-skill copies found in a raw AKT file, in the bundle's
row order (by student id, then answer order), and one clear error for a run dir that is not a finished run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("kt_repeat_slice",
                                              ROOT / "experiments/reproduce_kt_assist2009/repeat_slice.py")
repeat_slice = importlib.util.module_from_spec(spec)
spec.loader.exec_module(repeat_slice)


def test_copies_are_same_problem_other_skill_same_answer(tmp_path):
    f = tmp_path / "test1.csv"
    # student 9 first in the file: problem 5 (skills 1, 2) answered once -> second row a copy; then problem 5 again
    # answered wrong (a new attempt, not a copy) and problem 6. Student 3: problem 7 (skills 3, 4) answered 0 then
    # 1 (different answers: two responses, not a copy).
    f.write_text("9,1009\n5,5,5,6\n1,2,1,3\n1,1,0,0\n3,1003\n7,7\n3,4\n0,1\n")
    copy, label = repeat_slice.copy_flags(f)
    # bundle order: student 3 first (sorted by id), then student 9 in answer order
    np.testing.assert_array_equal(copy, [False, False, False, True, False, False])
    np.testing.assert_array_equal(label, [0, 1, 1, 1, 0, 0])


def test_not_a_run_dir_is_one_line(tmp_path, capsys):
    assert repeat_slice.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "result.json: not found" in err
