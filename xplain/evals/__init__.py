"""Quality measurements. Each suite module registers itself with `@suite("name")`; `xplain eval NAME` runs it."""
