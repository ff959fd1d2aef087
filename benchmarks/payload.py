"""What the benchmark sends: a realistic ~1 KB chat request, and the fake upstream's scenarios."""

from __future__ import annotations

import json
from typing import Any

MESSAGES: list[dict[str, Any]] = [
    {
        "role": "system",
        "content": (
            "You are a concise support assistant for Acme Cloud. Answer in plain English, cite the "
            "relevant console page when you can, and never invent prices or limits you are not sure of. "
            "Keep answers under 200 words unless asked for detail."
        ),
    },
    {
        "role": "user",
        "content": (
            "Our nightly export job started failing yesterday with 'quota exceeded' although usage on "
            "the dashboard is at 61%. Nothing changed on our side. What should we check first?"
        ),
    },
    {
        "role": "assistant",
        "content": (
            "Quota errors below the dashboard limit usually come from a per-region or per-minute limit "
            "rather than the monthly total. Which region does the export job run in, and how many "
            "parallel workers does it start?"
        ),
    },
    {
        "role": "user",
        "content": (
            "It runs in eu-west-2 with 24 workers, and we raised that from 8 last week. Could the "
            "per-minute limit be the problem, and how do we see it in the console?"
        ),
    },
]


def chat_body(stream: bool = False) -> bytes:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "temperature": 0.2,
        "max_tokens": 400,
        "user": "bench-user-0001",
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


#: Streamed answer for the TTFT rows: 128 characters in 16-character deltas (8 content chunks,
#: plus the role chunk, the finish chunk and [DONE]), sent back to back.
STREAM_TEXT = (
    "Yes: 24 workers can exceed the per-minute write limit in eu-west-2. Open Quotas > Rates, "
    "filter by region, and check the peak.  "
)
TTFT_SCENARIO = json.dumps({"chunk_size": 16, "chunk_delay": 0.0, "content": STREAM_TEXT})
#: The same answer paced at 20 ms per event: shows whether a proxy pipes or buffers streams.
PACED_SCENARIO = json.dumps({"chunk_size": 16, "chunk_delay": 0.02, "content": STREAM_TEXT})

#: Headers every request carries (the tenant header is what the default policy reads).
HEADERS = {
    "content-type": "application/json",
    "authorization": "Bearer bench-not-a-real-key",
    "x-tenant-id": "bench-tenant",
}
