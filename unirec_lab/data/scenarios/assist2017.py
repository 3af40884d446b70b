"""ASSISTments 2017 (AKT ``assist2017_pid`` version).

Raw (``education/assist2017_pid``): ``assist2017_pid_valid{1..5}.csv`` (4 lines per student, as 2009; the
five folds are disjoint), ``skill.json`` (skill name -> idx). 1,705 students, 3,162 problems, 102 skills,
941,502 responses: 99.86% of the published set (4 students appear only in AKT's train files, absent from the
snapshot). Item = problem with ``skill`` / ``skills`` / ``skill_text`` fields as in 2009. Split: per-student
chronological 80/10/10.
"""

from __future__ import annotations

from unirec_lab.data.scenarios.knowledge_tracing import KnowledgeTracingScenario


class Assist2017Scenario(KnowledgeTracingScenario):
    dataset = "education/assist2017_pid"
    loader_version = 1
    files = tuple(f"assist2017_pid_valid{k}.csv" for k in range(1, 6))
    columns = ("problem", "skill", "correct")
    header = "user"
    item_column = "problem"
    skill_names = "skill.json"
