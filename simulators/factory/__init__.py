"""The factory simulator: orders, manufacturing status webhooks, and the subcontracted transport company."""
