"""One module per tab, each with ``build(ctx, service)``."""
