"""Statics2011 (OLI engineering statics; AKT / DKVMN version).

Raw (``education/statics2011``): ``statics.csv`` (3 lines per student: sequence length / exercise-tag ids /
correctness). 333 students, 1,223 exercise tags, 189,297 responses. No user ids (a student is a block of the
file), no names: item = exercise tag, no item fields. Split: per-student chronological 80/10/10.
"""

from __future__ import annotations

from unirec_lab.data.scenarios.knowledge_tracing import KnowledgeTracingScenario


class Statics2011Scenario(KnowledgeTracingScenario):
    dataset = "education/statics2011"
    loader_version = 1
    files = ("statics.csv",)
    columns = ("tag", "correct")
    header = "len"
    item_column = "tag"
