"""``unirec-train``: train, select by validation, test the selected checkpoint(s), write ``result.json``.

    unirec-train                                   # unified model on the four synthetic scenarios
    unirec-train model=per_scenario                # same architecture, one independent model per scenario
    unirec-train scenario=[synthetic_news,synthetic_social] trainer.max_epochs=3 seed=7
    unirec-train -m seed=1,2,3 model=unified,per_scenario

The work is :class:`unirec_lab.engine.recipe.RunRecipe` (setup -> fit -> select -> evaluate -> record). This
module only composes the config and guards the run: bad input ends with one line and exit code 2, SIGTERM /
SIGINT stop at a safe point (exit 143 / 130, with the command that resumes), and in a multirun a failed job is
recorded (``failure.json``) while the sweep goes on. Heavy imports (torch, Lightning) wait until a job runs, so
``unirec-train --help`` answers at once.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig


def train(cfg: DictConfig) -> float:
    """Run one job; return the selection score of the best checkpoint(s) (for sweepers such as Optuna)."""
    from unirec_lab.engine.recipe import RunRecipe
    from unirec_lab.engine.signals import signals_interrupt

    with signals_interrupt():
        return RunRecipe(cfg).run()


@hydra.main(version_base="1.3", config_path="pkg://unirec_lab.conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from unirec_lab.engine.guard import run_guarded
    from unirec_lab.utils.console import quiet_third_party

    quiet_third_party()
    return run_guarded(train, cfg)


if __name__ == "__main__":
    main()
