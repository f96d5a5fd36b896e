"""Outbound alerts: hot issues sent to the tools on-call teams use, through a durable outbox in Redis (#18)."""
