"""The rollout controller (SPEC 9): statistics, decisions and the policy writer."""
