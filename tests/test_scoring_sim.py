"""On the simulator's traffic, the scores separate the populations they claim to.

The simulated bodies go through ``normalize.request_info`` + ``normalize.parse_event`` and
``Scorer.process``, as in the worker (see ``ingest_worker.scoring.evaluate`` for where each
score is read so that the label does not leak into it).  The AUCs are printed (``-s``).
"""

from __future__ import annotations

from collections import defaultdict

import pytest

from clickstream_lake.simulate import SimConfig, generate
from ingest_worker.scoring import Scorer
from ingest_worker.scoring.evaluate import auc, separation, tracked_events

DAY_MS = 86_400_000
END_MS = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS  # a fixed timeline: reproducible traffic


@pytest.fixture(scope="module")
def traffic():
    return list(generate(SimConfig(sites=2, days=3, seed=5, end_ms=END_MS)))


def test_scores_separate_bots_buyers_and_rage_sessions(traffic):
    result = separation(traffic)
    figures = result.as_dict()
    print("\nscore separation on simulated traffic:",
          ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))
    assert result.counts["bot_visitors"] >= 10 and result.counts["buyer_sessions"] >= 30
    assert result.bot_auc >= 0.95
    assert result.conversion_auc >= 0.8
    assert result.conversion_auc_browsing >= 0.72  # before any cart step: browsing alone
    assert result.frustration_auc >= 0.9


def test_identity_and_sessions_match_the_ground_truth(traffic):
    scorer = Scorer(secret=b"sim")
    ids_of_visitor: dict[str, set[str]] = defaultdict(set)
    ids_of_session: dict[str, set[str]] = defaultdict(set)
    sessions_of_id: dict[str, set[str]] = defaultdict(set)
    human_bot, bot_bot = [], []
    for se, ev, scores, _ in tracked_events(traffic, scorer, {}):
        ids_of_visitor[se.visitor_key].add(ev.visitor_id)
        ids_of_session[se.session_key].add(ev.session_id)
        sessions_of_id[ev.session_id].add(se.session_key)
        (bot_bot if se.is_bot else human_bot).append(scores["bot_probability"])
    split_visitors = [k for k, ids in ids_of_visitor.items() if len(ids) > 1]
    split_sessions = [k for k, ids in ids_of_session.items() if len(ids) > 1]
    merged_sessions = [k for k, keys in sessions_of_id.items() if len(keys) > 1]
    print(f"\nvisitors {len(ids_of_visitor)} (split {len(split_visitors)}), sessions {len(ids_of_session)} "
          f"(split {len(split_sessions)}, merged {len(merged_sessions)})")
    # the cookie (set on the first response) keeps every visitor one visitor over sessions and days
    assert not split_visitors
    # the 30-minute rule reconstructs the simulator's sessions exactly
    assert not split_sessions and not merged_sessions
    # few false alarms: almost no human event looks like a bot, almost every bot event does
    assert sum(v >= 50 for v in human_bot) / len(human_bot) < 0.01
    assert sum(v >= 50 for v in bot_bot) / len(bot_bot) > 0.9
    assert auc(bot_bot, human_bot) > 0.95
