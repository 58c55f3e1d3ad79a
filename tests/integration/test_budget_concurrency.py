"""Ten files at once must not trip FullStory's per-org limit: the org-wide in-flight budget holds
across executions, every job still completes, and no lease is left behind."""

from __future__ import annotations

from jobtracker.simulators.fullstory import SimulatorConfig
from tests.integration.helpers import fullstory_batch_budget, ndjson, users


def test_many_concurrent_jobs_stay_within_the_org_budget_and_all_complete(offline):
    sim = SimulatorConfig(polls_to_complete=3, in_progress_limit=10_000)
    with offline(sim=sim, OrgInFlightBudget=3, InFlightBudget=4, MaxBatchRequests=2) as session:
        stack = session.stack
        for n in range(8):
            stack.upload(f"inbox/users/burst-{n}.ndjson", ndjson(users(6, start=n * 100)))
        stack.wait_until(lambda: len(stack.jobs()) == 8, what="eight jobs", timeout=60)
        jobs = [stack.wait_for_job(j["id"], timeout=180) for j in stack.jobs()]

        assert {j["state"] for j in jobs} == {"COMPLETED"}
        assert all(j["accounting"]["balanced"] and j["imported"] == 6 for j in jobs)
        stats = session.simulator.stats
        assert stats["batch_posts"] == 8 * 3  # every batch exactly once
        assert stats["max_in_progress"] <= 3  # the budget held across all executions
        assert stats["max_in_progress"] >= 2  # and jobs really did run side by side
        assert fullstory_batch_budget().holders() == {}  # every lease released
        assert sum(int(b.get("budgetWaits", 0)) for j in jobs for b in stack.list_batches(j["id"])) > 0
