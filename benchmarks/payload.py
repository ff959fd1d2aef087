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


#: ~2 KB of ordinary English prose (no secrets, personal data, insults or instructions to the
#: model): the user message of the ``prose`` body the content-scanning plugin rows are driven with.
PROSE_2K = (
    "Last spring our community garden group decided to rebuild the old greenhouse behind the library. "
    "The frame was still sound, but most of the glass panels had cracked over the winter, and the door "
    "no longer closed properly. We spent the first weekend measuring every opening and writing down what "
    "we would need: new panels, weather strips, hinges, a latch, and enough paint to cover the wooden "
    "beams twice. A local hardware shop offered a discount when we explained the project, and two "
    "neighbours lent us ladders and a trailer to carry everything from the shop to the garden. "
    "The work went slowly at first because only a few people could come during the week. On Saturdays, "
    "though, the garden filled with volunteers of every age. Children sorted screws into jars and "
    "labelled them, while older members showed newcomers how to cut the weather strips to length and how "
    "to seat a panel so that rain runs off instead of pooling in the corners. By the third weekend the "
    "south wall was finished, and we could already feel the difference: the air inside stayed warm long "
    "after the sun had gone behind the trees. "
    "We also learned a few lessons. Painting the beams before fitting the glass would have saved a lot of "
    "careful work with masking tape. Buying a few spare panels turned out to be wise, since one slipped "
    "from a ladder on a windy afternoon. And keeping a simple notebook by the door, where everyone wrote "
    "down what they had done and what was left, meant that nobody had to ask the same questions twice. "
    "Now the greenhouse holds trays of tomato, pepper and basil seedlings from March until the last frost, "
    "and in autumn we use it to dry beans and store the garden tools. The school next door brings classes "
    "over to watch seeds sprout, and the library lends out a small collection of gardening books that "
    "visitors can read on the bench inside. Could you suggest a simple watering schedule for the seedlings "
    "and a few vegetables that grow well in a small unheated greenhouse during the cooler months of the year?"
)


def chat_body(stream: bool = False, prose: bool = False) -> bytes:
    """The ~1 KB support conversation, or with ``prose`` the system prompt and one ~2 KB user message."""
    messages = [MESSAGES[0], {"role": "user", "content": PROSE_2K}] if prose else MESSAGES
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": messages,
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


#: Paragraphs of a support ticket thread (the guarded-policy rows): ordinary prose with the
#: personal data such tickets hold, about one email address and one phone number per ~700
#: characters. Nothing in it is a secret, an insult or an instruction to the model, so the guards
#: redact the contact data and block nothing.
_TICKET_PARTS = (
    "Hello support team, I am writing on behalf of our accounts department about invoice 2291, which "
    "was charged twice this month. Please reply to maria.lopez{n}@example.com or call me on "
    "+1 415 555 01{n2:02d} during office hours, Monday to Thursday. ",
    "We checked the billing page and both charges show the same amount and the same reference, so it "
    "looks like the retry after a timeout went through as a second payment. Our finance lead, who "
    "approves refunds on our side, can be reached at finance{n}@acme-widgets.example.org. ",
    "For context, the first attempt failed with an error page after about thirty seconds, and the "
    "browser offered to submit the form again. We did that once. The second attempt succeeded and "
    "we received one confirmation email, but the bank statement lists two debits. ",
    "If you need to reach someone outside those hours, our operations desk answers on "
    "(212) 555-01{n2:02d} and forwards urgent messages. We would prefer a refund to the original card "
    "rather than a credit note, because the budget for this quarter is already closed. ",
    "Thank you for looking into this. We have been customers for four years and this is the first "
    "problem of this kind. Could you confirm when the refund will arrive and whether we need to do "
    "anything to prevent the same thing on next month's invoice? ",
)


def ticket(size: int) -> str:
    """A support-ticket text of about ``size`` characters (whole paragraphs, deterministic)."""
    out: list[str] = []
    total, n = 0, 0
    while total < size:
        part = _TICKET_PARTS[n % len(_TICKET_PARTS)].format(n=n, n2=n % 100)
        out.append(part)
        total += len(part)
        n += 1
    return "".join(out)[:size].rstrip()


def ticket_body(size: int) -> bytes:
    """The system prompt and one user message of ``size`` characters of support ticket."""
    body = {
        "model": "gpt-4o-mini",
        "messages": [MESSAGES[0], {"role": "user", "content": ticket(size)}],
        "temperature": 0.2,
        "max_tokens": 400,
        "user": "bench-user-0001",
    }
    return json.dumps(body, separators=(",", ":")).encode()


#: The body of a wrk Lua ``done`` function that prints one ``WRKJSON {...}`` line (requests, errors,
#: p50/p99), which ``measure.Loader`` parses: shared by every generated wrk script.
WRK_REPORT_LUA = """  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
    .. '"status": %d, "timeout": %d, "p50_us": %.0f, "p99_us": %.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))"""
