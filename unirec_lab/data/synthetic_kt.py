"""A seeded synthetic knowledge-tracing scenario with planted skill mastery (``conf/scenario/synthetic_kt.yaml``).

Every student has a latent mastery per skill, ``theta[u, s] ~ N(0, mastery_std)``; every problem has one skill
and a difficulty ``b ~ N(0, difficulty_std)``. Students practise skills in runs (``run_length`` on average, as
in a skill builder) and answer correctly with probability ``sigmoid(theta[u, s] - b)``; each attempt at a skill
raises its mastery by ``learning_rate``. Students are split into train / val / test groups (as the published
knowledge-tracing folds), so a test student's mastery can only be read from their earlier answers: what a
correct/incorrect history carries and a positives-only history partly hides.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.scenarios.interactions import interactions_frame, make_spec
from unirec_lab.data.schema import FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

GENERATOR_VERSION = 1


class SyntheticKnowledgeTracing:
    """A synthetic knowledge-tracing source (see the module docstring for the knobs)."""

    def __init__(self, name: str, num_students: int = 600, num_skills: int = 12, problems_per_skill: int = 20,
                 responses_per_student: int = 60, run_length: float = 6.0, mastery_std: float = 1.5,
                 difficulty_std: float = 0.7, learning_rate: float = 0.1, val_frac: float = 0.1,
                 test_frac: float = 0.2, seed: int = 0) -> None:
        if num_students < 10 or num_skills < 1 or problems_per_skill < 1 or responses_per_student < 2:
            raise ValueError(f"scenario {name!r}: needs >= 10 students, >= 1 skill and problem per skill, "
                             ">= 2 responses per student")
        if not (0 < val_frac and 0 < test_frac and val_frac + test_frac < 1):
            raise ValueError(f"scenario {name!r}: val_frac={val_frac}, test_frac={test_frac}: expected positive "
                             "fractions of the students with a sum below 1")
        self.name = name
        self.params = dict(num_students=num_students, num_skills=num_skills, problems_per_skill=problems_per_skill,
                           responses_per_student=responses_per_student, run_length=run_length,
                           mastery_std=mastery_std, difficulty_std=difficulty_std, learning_rate=learning_rate,
                           val_frac=val_frac, test_frac=test_frac, seed=seed)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "synthetic_kt", "version": GENERATOR_VERSION, "name": self.name, **self.params}

    def build(self) -> BuiltBundle:
        p = self.params
        rng = np.random.default_rng(p["seed"])
        nu, ns, n = p["num_students"], p["num_skills"], p["responses_per_student"]
        ni = ns * p["problems_per_skill"]
        theta = rng.normal(0.0, p["mastery_std"], (nu, ns))
        skill_of = np.repeat(np.arange(ns), p["problems_per_skill"])
        difficulty = rng.normal(0.0, p["difficulty_std"], ni)
        # skill runs: a new skill starts with probability 1 / run_length at each step
        new_run = rng.random((nu, n)) < 1.0 / max(p["run_length"], 1.0)
        new_run[:, 0] = True
        run_id = np.cumsum(new_run, 1) - 1
        run_skill = rng.integers(0, ns, (nu, n))
        skill = np.take_along_axis(run_skill, run_id, 1)
        item = skill * p["problems_per_skill"] + rng.integers(0, p["problems_per_skill"], (nu, n))
        # attempts at the same skill so far (learning): cumulative count per (student, skill), vectorised
        onehot = np.zeros((nu, n, ns), dtype=np.int32)
        np.put_along_axis(onehot, skill[..., None], 1, 2)
        before = np.take_along_axis(np.cumsum(onehot, 1) - onehot, skill[..., None], 2)[..., 0]
        ability = np.take_along_axis(theta, skill, 1) + p["learning_rate"] * before
        correct = rng.random((nu, n)) < 1.0 / (1.0 + np.exp(-(ability - difficulty[item])))

        user = np.repeat(np.arange(nu), n)
        ts = np.tile(np.arange(n), nu)
        group_of = rng.permutation(nu)
        n_test, n_val = int(round(p["test_frac"] * nu)), int(round(p["val_frac"] * nu))
        student_level = np.zeros(nu, dtype=np.int64)
        student_level[group_of[:n_test]] = 2
        student_level[group_of[n_test:n_test + n_val]] = 1
        inter = interactions_frame(user, item.reshape(-1), correct.reshape(-1).astype(np.float32), ts,
                                   student_level[user], user)
        items = pd.DataFrame({"item": np.arange(ni), "skill": skill_of + 1})
        users = pd.DataFrame({"user": np.arange(nu)})
        spec = make_spec(self.name, nu, ni, [], [FieldSpec("skill", "categorical", ns + 1, "private")],
                         label="1 = answered correctly (planted mastery)",
                         protocol=f"synthetic knowledge tracing; students split {1 - p['val_frac'] - p['test_frac']:.0%}"
                                  f"/{p['val_frac']:.0%}/{p['test_frac']:.0%} train/val/test; GAUC by student",
                         group_by="user")
        return BuiltBundle(spec, inter, users, items, {"generator": "unirec_lab.data.synthetic_kt",
                                                       "generator_version": GENERATOR_VERSION})
