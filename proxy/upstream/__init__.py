"""Everything below the chain: the HTTP client, SSE, provider wire formats, upstream targets."""
