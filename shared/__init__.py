"""The platform's own library: settings, events, bus, outbox, idempotent consumers, Mongo, errors, logs."""
