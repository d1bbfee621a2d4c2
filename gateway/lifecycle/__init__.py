"""Model versions over time: registry, routing, rollouts, circuit breakers."""
