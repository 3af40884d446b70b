"""Seeded synthetic scenarios with planted cross-scenario structure (the embedded default data).

One *world* is shared by all scenarios: ``num_topics`` topic vectors and ``num_segments`` user-segment
centroids in a ``dim``-dimensional taste space. In every scenario

- a user belongs to a segment (a *shared* field) and has taste ``u = s * centroid + (1 - s) * noise`` where
  ``s = preference_sharing``: the part of a user's taste that other scenarios can teach a model about;
- an item has a topic (a *shared* field), a private category, optionally text tokens drawn from its topic's
  token distribution (shared vocabulary), a vector ``v = topic + item_noise * noise`` and a power-law
  popularity (``popularity_exponent``) that decides how often it is shown;
- a user is shown ``rows_per_user`` (log-normally spread) items in time order; in ``group_by=impression``
  mode items come in impressions of ``impression_size`` shown at one time (news);
- the label is Bernoulli(sigmoid(``signal`` * <u, v> + ``popularity_effect`` * log popularity + b)) with b
  set by bisection so the label rate matches ``label_rate`` (news clicks ~4%, education correctness ~65%).

Since user and item ids are private to a scenario, a model can only transfer knowledge through the shared
fields (segment, topic, text tokens) and through the history encoder: a per-scenario model must learn the
topic geometry from its own rows, the unified model learns it from all of them. The sparse scenario (few
users, few rows each) is where that matters. Splits are global-temporal: the last ``test_frac`` of time is
test, the ``val_frac`` before it is validation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from unirec_lab.data.prepare import BuiltBundle
from unirec_lab.data.schema import FeatureSpec, FieldSpec
from unirec_lab.utils.lazy import lazy_import

pd = lazy_import("pandas")  # imported on first use: a cached job never needs it

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SyntheticWorld:
    """Latent structure shared by every synthetic scenario."""

    dim: int = 16
    num_topics: int = 40
    num_segments: int = 24
    num_tokens: int = 400
    tokens_per_topic: int = 30
    seed: int = 7

    def draw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        topics = rng.normal(size=(self.num_topics, self.dim)) / np.sqrt(self.dim) * 2.0
        centroids = rng.normal(size=(self.num_segments, self.dim)) / np.sqrt(self.dim) * 2.0
        topic_tokens = np.stack([rng.choice(self.num_tokens, self.tokens_per_topic, replace=False)
                                 for _ in range(self.num_topics)])
        return topics, centroids, topic_tokens


def _calibrate_bias(logits: np.ndarray, target: float) -> float:
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = (lo + hi) / 2
        rate = (1.0 / (1.0 + np.exp(-(logits + mid)))).mean()
        lo, hi = (mid, hi) if rate < target else (lo, mid)
    return (lo + hi) / 2


class SyntheticScenario:
    """A synthetic scenario source (see the module docstring for the knobs)."""

    def __init__(self, name: str, world: dict[str, Any] | SyntheticWorld, num_users: int = 2000,
                 num_items: int = 1000, rows_per_user: float = 30.0, label_rate: float = 0.3,
                 preference_sharing: float = 0.7, item_noise: float = 0.5, signal: float = 2.0,
                 popularity_exponent: float = 1.0, popularity_effect: float = 0.3,
                 num_categories: int = 20, text_tokens: int = 0, group_by: str = "user",
                 impression_size: int = 10, val_frac: float = 0.1, test_frac: float = 0.1,
                 seed: int = 0, shift_at: float | None = None) -> None:
        """``shift_at``: a planted preference shift: from that fraction of time on, every user's taste is
        flipped (``-u``), so a model trained on the past is wrong after it (the replay / update tests)."""
        if group_by not in ("user", "impression"):
            raise ValueError(f"scenario {name!r}: group_by={group_by!r}, expected 'user' or 'impression'")
        if not 0.0 < label_rate < 1.0:
            raise ValueError(f"scenario {name!r}: label_rate={label_rate}, expected a value in (0, 1)")
        if shift_at is not None and not 0.0 < shift_at < 1.0:
            raise ValueError(f"scenario {name!r}: shift_at={shift_at}, expected null or a value in (0, 1)")
        if num_users < 10 or num_items < 10:
            raise ValueError(f"scenario {name!r}: needs at least 10 users and 10 items")
        self.name = name
        self.world = world if isinstance(world, SyntheticWorld) else SyntheticWorld(**world)
        self.params = dict(num_users=num_users, num_items=num_items, rows_per_user=rows_per_user,
                           label_rate=label_rate, preference_sharing=preference_sharing,
                           item_noise=item_noise, signal=signal, popularity_exponent=popularity_exponent,
                           popularity_effect=popularity_effect, num_categories=num_categories,
                           text_tokens=text_tokens, group_by=group_by, impression_size=impression_size,
                           val_frac=val_frac, test_frac=test_frac, seed=seed)
        if shift_at is not None:  # only then: the fingerprints (caches) of unshifted scenarios stay as they were
            self.params["shift_at"] = float(shift_at)

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": "synthetic", "version": GENERATOR_VERSION, "name": self.name,
                "world": asdict(self.world), **self.params}

    def build(self) -> BuiltBundle:
        p = self.params
        topics, centroids, topic_tokens = self.world.draw()
        # the scenario's own stream; crc of the name keeps scenarios distinct but deterministic
        name_key = int.from_bytes(self.name.encode()[:8].ljust(8, b"\0"), "little") % (2**31)
        rng = np.random.default_rng([p["seed"], name_key, self.world.seed])
        nu, ni, d = p["num_users"], p["num_items"], self.world.dim

        segment = rng.integers(0, self.world.num_segments, nu)
        s = p["preference_sharing"]
        user_vec = s * centroids[segment] + (1 - s) * rng.normal(size=(nu, d)) / np.sqrt(d) * 2.0

        topic_pop = 1.0 / np.arange(1, self.world.num_topics + 1) ** 0.5
        topic = rng.choice(self.world.num_topics, ni, p=topic_pop / topic_pop.sum())
        item_vec = topics[topic] + p["item_noise"] * rng.normal(size=(ni, d)) / np.sqrt(d) * 2.0
        popularity = 1.0 / rng.permutation(np.arange(1, ni + 1)) ** p["popularity_exponent"]
        popularity /= popularity.sum()
        category = (topic * 7 + rng.integers(0, 3, ni)) % p["num_categories"]

        # rows per user: log-normal around rows_per_user, at least 3 so every split can be reached
        n_rows = np.maximum(3, rng.lognormal(np.log(p["rows_per_user"]), 0.6, nu).round().astype(np.int64))
        if p["group_by"] == "impression":
            k = p["impression_size"]
            n_imp = np.maximum(1, n_rows // k)
            imp_user = np.repeat(np.arange(nu), n_imp)
            imp_ts = rng.uniform(0, 1, len(imp_user))
            user = np.repeat(imp_user, k)
            ts_f = np.repeat(imp_ts, k)
            group = np.repeat(np.arange(len(imp_user)), k)
        else:
            user = np.repeat(np.arange(nu), n_rows)
            ts_f = rng.uniform(0, 1, len(user))
            group = user.copy()
        item = rng.choice(ni, len(user), p=popularity)
        if p["group_by"] == "impression":  # an impression does not show the same item twice
            item = self._dedupe_within_groups(item, group, popularity, rng)
        logit = p["signal"] * np.einsum("nd,nd->n", user_vec[user], item_vec[item])
        if "shift_at" in p:
            logit = np.where(ts_f >= p["shift_at"], -logit, logit)
        logit += p["popularity_effect"] * np.log(popularity[item] * ni)
        logit += _calibrate_bias(logit, p["label_rate"])
        label = (rng.uniform(size=len(logit)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

        ts = (ts_f * 1e9).astype(np.int64)
        t_val, t_test = np.quantile(ts, [1 - p["val_frac"] - p["test_frac"], 1 - p["test_frac"]])
        split = np.where(ts >= t_test, "test", np.where(ts >= t_val, "val", "train"))
        inter = pd.DataFrame({"user": user, "item": item, "label": label, "ts": ts, "split": split,
                              "group": group.astype(np.int64)})
        inter = inter.sort_values(["ts", "group", "item"], kind="stable").reset_index(drop=True)

        users = pd.DataFrame({"user": np.arange(nu), "segment": segment + 1})
        items = pd.DataFrame({"item": np.arange(ni), "topic": topic + 1, "category": category + 1})
        item_fields = [FieldSpec("topic", "categorical", self.world.num_topics + 1, "shared:topic"),
                       FieldSpec("category", "categorical", p["num_categories"] + 1, "private")]
        if p["text_tokens"] > 0:
            picks = rng.integers(0, self.world.tokens_per_topic, (ni, p["text_tokens"]))
            toks = topic_tokens[topic[:, None], picks] + 1
            items["title"] = list(np.sort(toks, axis=1))
            item_fields.append(FieldSpec("title", "text", self.world.num_tokens + 1, "shared:tokens",
                                         max_len=p["text_tokens"]))
        spec = FeatureSpec(
            scenario=self.name, num_users=nu, num_items=ni,
            user_fields=(FieldSpec("segment", "categorical", self.world.num_segments + 1, "shared:segment"),),
            item_fields=tuple(item_fields), has_group=True, has_history=False,
            label=f"synthetic Bernoulli label, target rate {p['label_rate']}",
            extra={"group_by": p["group_by"], "protocol": "global temporal split "
                   f"(last {p['test_frac']:.0%} of time test, {p['val_frac']:.0%} before it val)"})
        return BuiltBundle(spec, inter, users, items, {"generator": "unirec_lab.data.synthetic",
                                                       "generator_version": GENERATOR_VERSION})

    @staticmethod
    def _dedupe_within_groups(item: np.ndarray, group: np.ndarray, popularity: np.ndarray,
                              rng: np.random.Generator, rounds: int = 10) -> np.ndarray:
        item = item.copy()
        for _ in range(rounds):
            order = np.lexsort((item, group))
            dup = np.zeros(len(item), dtype=bool)
            dup[order[1:]] = (group[order[1:]] == group[order[:-1]]) & (item[order[1:]] == item[order[:-1]])
            if not dup.any():
                break
            item[dup] = rng.choice(len(popularity), int(dup.sum()), p=popularity)
        return item
