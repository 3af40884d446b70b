"""ASSISTments 2015 (AKT version, skill level only).

Raw (``education/assist2015``): ``assist2015_valid{1..5}.csv`` (the five disjoint validation folds together
cover every student; 3 lines per student: ``user_idx,orig_user_id`` / skill ids / correctness).
19,840 students, 100 skills, 683,801 responses. There are no problem ids and no skill names, so item = skill
and there are no item fields. Split: per-student chronological 80/10/10 (the fold files are used only as the
union; AKT's train files are not in the snapshot).
"""

from __future__ import annotations

from unirec_lab.data.scenarios.knowledge_tracing import KnowledgeTracingScenario


class Assist2015Scenario(KnowledgeTracingScenario):
    dataset = "education/assist2015"
    loader_version = 1
    files = tuple(f"assist2015_valid{k}.csv" for k in range(1, 6))
    columns = ("skill", "correct")
    header = "user"
    item_column = "skill"
