"""The README's commands are the tested commands: every line of every ```bash block runs here, as a user types it,
through the installed console scripts, from a working directory outside the repository (experiment scripts,
which need a checkout, from the repository root). Training commands get fast overrides appended; a command
that fails, or names a console script that no longer exists, fails its test.

Commands run in README order in one shared working directory, so later commands see what earlier ones wrote
(``unirec-report multirun/`` reads the sweep above it; ``<time>`` resolves to the newest run dir).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
FAST = ["debug=fast", "num_threads=1"]
RAW = Path(os.environ.get("UNIREC_RAW_DIR") or ROOT.parent / "shared" / "data")
REAL_SCENARIOS = ("ecommerce", "social", "education", "news", "real")
# Lines that cannot run on a CI machine, each with the reason; the test checks each is still in the README.
NOT_RUN = {
    "pip install": "the install itself is what .ci/run does (editable here; the wheel in a second venv)",
    "python -m pytest": "the test suite itself",
    "wandb sync": "uploads to a W&B account over the network",
    "unirec-train -m sweep=slurm": "submits to a SLURM cluster (its config is composed in tests/unit/test_configs.py)",
}
TIMEOUT_S = 900


def readme_commands(text: str) -> list[str]:
    """Every command of the ```bash blocks: comments stripped, continuations joined, ``&&`` chains split; a
    here-document (``cmd <<'END'`` ... ``END``) stays one command with its body."""
    out: list[str] = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        lines = re.sub(r"\\\n\s*", " ", block).splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
            if heredoc:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == heredoc.group(1))
                out.append("\n".join(lines[i:end + 1]))
                i = end + 1
                continue
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                out += [part.strip() for part in line.split("&&")]
            i += 1
    return out


def _skip_reason(cmd: str) -> str | None:
    for prefix, why in NOT_RUN.items():
        if cmd.startswith(prefix):
            return why
    return None


def _needs_real_data(cmd: str) -> bool:
    if "experiments/" in cmd:
        return True
    m = re.search(r"scenario=\[?([\w,]+)", cmd)
    return bool(m) and any(s.split("_")[0] in REAL_SCENARIOS and not s.startswith("synthetic")
                           for s in m.group(1).split(","))


def fast(cmd: str) -> str:
    """Append the fast overrides where a command trains (as text, so ``$PWD`` and quoting stay the user's)."""
    words = shlex.split(cmd.splitlines()[0]) if cmd.strip() else []
    words = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    if not words:
        return cmd
    if words[0] == "unirec-train" and not {"--help", "--cfg", "--hydra-help", "--info"} & set(words):
        return f"{cmd} {' '.join(FAST)}"
    if words[0] == "unirec-compare":
        return f"{cmd} {' '.join(FAST)}" if "--" in words else f"{cmd} -- {' '.join(FAST)}"
    return cmd


def resolve_placeholders(cmd: str, cwd: Path) -> str:
    """``<time>`` = the newest run dir (with a result.json) matching the path; other placeholders are an error."""
    def newest(m: re.Match) -> str:
        prefix = cmd[:m.start()].split()[-1] if cmd[:m.start()].split() else ""
        hits = sorted(p for p in glob.glob(str(cwd / (prefix + "*"))) if Path(p, "result.json").is_file())
        assert hits, f"README command {cmd!r}: no run dir matches {prefix}<time> (run the training above first)"
        return Path(hits[-1]).name

    cmd = re.sub(r"<time>", newest, cmd)
    left = re.findall(r"<[a-z_ ]+>", cmd)
    assert not left, f"README command {cmd!r} has placeholders the test cannot fill: {left}"
    return cmd


COMMANDS = readme_commands(README.read_text())


def _newest(cwd: Path, pattern: str) -> Path:
    hits = sorted(cwd.glob(pattern))
    assert hits, f"nothing matches {pattern} under {cwd}"
    return hits[-1]


def _check_own_scenario(cwd: Path) -> None:
    results = sorted(_newest(cwd, "outputs/compare/*").glob("*/result.json"))
    assert len(results) == 2, results  # unified and per_scenario
    for r in results:
        test = json.loads(r.read_text())["test"]
        assert set(test) == {"news", "my_shop"} and 0 <= test["my_shop"]["auc"] <= 1, (r, test)


def _check_seed_sweep(cwd: Path) -> None:
    results = sorted(_newest(cwd, "multirun/default/*").glob("*/result.json"))
    assert len(results) == 6, results  # 3 seeds x 2 models


# What a command must have written, beyond exiting 0 (keyed by a piece of the command).
POSTCONDITIONS = {"scenario=[synthetic_news,my_shop]": _check_own_scenario,
                  "-m seed=1,2,3 model=unified,per_scenario": _check_seed_sweep}


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory):
    """A working directory outside the repository, with a cache shared by all commands."""
    d = tmp_path_factory.mktemp("user")
    assert not d.resolve().is_relative_to(ROOT.resolve())
    return d


@pytest.fixture(scope="module")
def user_env(user_dir):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UNIREC_", "HYDRA_"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", WANDB_MODE="offline", WANDB_SILENT="true",
               UNIREC_CACHE_DIR=str(user_dir / ".cache"), OMP_NUM_THREADS="1")
    if RAW.is_dir():
        env["UNIREC_RAW_DIR"] = str(RAW)
    return env


def test_readme_has_commands_and_every_excluded_one_still_exists():
    assert len(COMMANDS) >= 10
    for prefix in NOT_RUN:
        assert any(c.startswith(prefix) for c in COMMANDS), f"NOT_RUN lists {prefix!r}, no longer in the README"


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{i:02d}-{c.splitlines()[0][:60]}" for i, c in enumerate(COMMANDS)])
def test_readme_command(cmd, user_dir, user_env):
    why = _skip_reason(cmd)
    if why:
        pytest.skip(f"not run here: {why}")
    if _needs_real_data(cmd) and not RAW.is_dir():
        pytest.skip(f"needs the real raw data ({RAW} absent; set UNIREC_RAW_DIR)")
    exe = next(w for w in shlex.split(cmd.splitlines()[0]) if not re.match(r"^[A-Z_]+=", w))
    if exe.startswith("unirec-"):
        assert (BIN / exe).is_file(), f"README names {exe}, which is not an installed console script"
    env = dict(user_env)
    cwd = user_dir
    line = fast(resolve_placeholders(cmd, cwd))
    if line.startswith("bash experiments/"):  # experiment scripts live in a checkout: run from it, write to tmp
        script = line.split()[1]
        assert (ROOT / script).is_file(), f"README names {script}, which does not exist"
        out = user_dir / "experiments" / Path(script).parent.name
        env.update(EXTRA=" ".join(FAST), SEEDS="1", OUT=str(out / "runs"), HERE=str(out / "tables"), CHECK="0")
        cwd = ROOT
    proc = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, stdin=subprocess.DEVNULL)
    tail = (proc.stdout[-3000:] + "\n--- stderr ---\n" + proc.stderr[-3000:])
    assert proc.returncode == 0, f"README command failed (exit {proc.returncode}): {line}\n{tail}"
    assert "Traceback" not in proc.stderr, f"{line}: printed a traceback\n{tail}"
    for key, check in POSTCONDITIONS.items():
        if key in cmd:
            check(cwd)


def test_postconditions_name_readme_commands():
    for key in POSTCONDITIONS:
        assert any(key in c for c in COMMANDS), f"POSTCONDITIONS names {key!r}, no longer in the README"
