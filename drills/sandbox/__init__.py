"""The embedded sandbox product: schema migrations, deterministic data, backup history."""
