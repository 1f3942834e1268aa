"""The rollout controller (docs/routing.md): statistics, decisions and the policy writer."""
