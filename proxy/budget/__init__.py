"""Rate and cost budgets: sliding-window counters and concurrency leases, in memory or Redis."""
