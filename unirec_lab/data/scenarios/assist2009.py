"""ASSISTments 2009-2010 skill builder, AKT ``assist2009_pid`` version: the default education data set.

Raw (``education/assist2009_pid``): ``assist2009_pid_{train1,valid1,test1}.csv`` (4 lines per student:
``user_idx,orig_user_id`` / problem ids / skill ids / correctness; the three files hold every student exactly
once), ``skill.json`` (skill name -> idx). 4,151 students, 16,891 problems, 110 skills, 325,637 responses.

Item = problem. A problem can carry several skills (2,986 problems appear with 2-4 skill ids across
responses), so the item fields are ``skill`` (categorical: the most frequent one), ``skills`` (multi, all of
them) and ``skill_text`` (words of their names, ``shared:tokens``). ``split: fold`` uses the published fold-1
student split (train1 -> train, valid1 -> val, test1 -> test: val/test students are unseen in train);
the default ``user_chrono`` splits each student's sequence 80/10/10 (see ``knowledge_tracing``).
"""

from __future__ import annotations

from unirec_lab.data.scenarios.knowledge_tracing import KnowledgeTracingScenario


class Assist2009Scenario(KnowledgeTracingScenario):
    dataset = "education/assist2009_pid"
    loader_version = 1
    files = ("assist2009_pid_train1.csv", "assist2009_pid_valid1.csv", "assist2009_pid_test1.csv")
    columns = ("problem", "skill", "correct")
    header = "user"
    item_column = "problem"
    skill_names = "skill.json"
    fold_splits = {"assist2009_pid_train1.csv": "train", "assist2009_pid_valid1.csv": "val",
                   "assist2009_pid_test1.csv": "test"}
