"""The default thread count follows the cores this process may really use (affinity, cgroup quota)."""

from __future__ import annotations

from unirec_lab.utils import cpus


def test_affinity_and_quota_bound_the_usable_cores(monkeypatch):
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(cpus, "_cgroup_quota", lambda: None)
    assert cpus.usable_cores() == 8 and cpus.default_threads() == 4
    monkeypatch.setattr(cpus, "_cgroup_quota", lambda: 2.5)  # a 2.5-CPU container on an 8-core host
    assert cpus.usable_cores() == 3 and cpus.default_threads() == 1
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {3})
    monkeypatch.setattr(cpus, "_cgroup_quota", lambda: None)
    assert cpus.usable_cores() == 1 and cpus.default_threads() == 1  # never 0


def test_cgroup_v2_quota_is_read(monkeypatch, tmp_path):
    real = cpus.Path

    def fake(p):
        return real(str(p).replace("/sys/fs/cgroup", str(tmp_path)))

    monkeypatch.setattr(cpus, "Path", fake)
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpus._cgroup_quota() == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpus._cgroup_quota() is None


def test_the_run_uses_the_default_when_num_threads_is_null(cfg_factory, monkeypatch):
    import torch

    from unirec_lab.engine.recipe import RunRecipe

    monkeypatch.setattr("unirec_lab.engine.recipe.default_threads", lambda: 1)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        RunRecipe(cfg_factory(["num_threads=null"])).setup()
        assert torch.get_num_threads() == 1
        RunRecipe(cfg_factory(["num_threads=2"])).setup()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
