"""A rotating set of distinct support tickets, so the guarded benchmarks do not flatter caches.

Why: sending the same body on every request lets every cache keyed by text content hit on every
request after the first, which real traffic mostly would not. In the sidecar those are (issue 17):

- the token counts of ``proxy/tokens/counting.py`` (budget; 4,096 entries keyed by the text's
  length and hash: the whole user message, up to 16,384 characters);
- not flattered, but hit on purpose: pii's e-mail validity cache is keyed by the domain, not
  the address (``proxy/detectors/pii``), and real traffic repeats a few domains as these tickets
  do (8 of them), so it hits here as it would in production;
- pii's vault: one conversation per first user message (``plugins/pii/vault.py``), so one
  body reuses one conversation and its numbered values, distinct bodies each open their own;
- pii's instruction cache (``plugins/pii/plugin.py``, ``_InstructionCache``, 256 system and
  developer texts): a system prompt really does repeat in production, so the system prompt is
  kept constant and this one keeps hitting, as it would;
- per request only, so not flattered either way: the detectors' ``ScanCache``
  (``proxy/detectors/shared.py``) and pii's per-thread capitalised-word scan (keyed by the
  text object); per policy or process, not by text: the compiled rule sets, Hyperscan gates,
  the model-to-encoding map, pii's applicable-rule lists.

The token-count LRU (4,096 entries) would hold a set of 256 tickets after one lap, so a set alone is not
enough: every ticket has a **marker** in each of its e-mail addresses and in a reference in its
first sentence (the ``MARKER`` text, the width of a request id) that the sender replaces with a
per-request id (``uid``: five lower-case letters, so no number recogniser sees it and the PII
counts stay put). The one outside the addresses matters: pii redacts the addresses before the
budget step counts tokens, and without it the redacted texts would repeat every 256 requests. Request ``i``
sends ticket ``i % count`` with ``uid(i)``: ``TicketSet.body(i)`` in Python and the same join in
the wrk script ``write_lua`` generates. Every request's text and addresses are then new, as for
a stream of distinct tickets; names, phone numbers, invoice numbers and some sentences vary
with the ticket, generated from ``seed`` (deterministic).

Density as ``payload.ticket``: about 1.6 e-mail addresses and 1.6 phone numbers per KB.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import payload

#: Tickets in a set, and the seed they are generated from.
COUNT = 256
SEED = 17
#: Stands for the request id in the tickets' e-mail addresses; as wide as ``uid``'s output.
UID_WIDTH = 5
MARKER = "~UID~"
#: Ids a wrk run skips after the ones it counted: requests in flight or prepared when it stopped.
SLACK = 1024
_LETTERS = "abcdefghijklmnopqrstuvwxyz"

_FIRST = (
    "maria", "james", "aiko", "lena", "omar", "priya", "tomas", "grace", "noah", "ines", "david",
    "sofia", "ravi", "hannah", "lucas", "mei", "peter", "amara", "jonas", "clara", "victor", "nadia",
    "samuel", "elena", "kofi", "julia", "marco", "sara", "felix", "yuki", "daniel", "rosa",
)  # fmt: skip
_LAST = (
    "lopez", "smith", "tanaka", "fischer", "haddad", "sharma", "novak", "obrien", "walker", "costa",
    "levi", "rossi", "mensah", "kowalski", "dubois", "chen", "berg", "moreau", "silva", "ivanova",
    "keller", "nguyen", "adams", "larsen", "moretti", "santos", "meyer", "young", "park", "weber",
)  # fmt: skip
_DOMAINS = (
    "example.com", "example.org", "example.net", "acme-widgets.example.org", "northwind.example.com",
    "globex.example.net", "initech.example.com", "umbrella-freight.example.org",
)  # fmt: skip
_TEAMS = ("finance", "billing", "accounts", "ops", "procurement", "payables", "admin", "it-desk")
_DAYS = ("Monday to Thursday", "Monday to Friday", "Tuesday to Friday", "weekdays")
_ROLES = ("finance lead", "controller", "office manager", "head of operations", "accounts manager")
_WHAT = ("invoice", "order", "subscription renewal", "annual licence", "support contract")
_FAILURE = (
    "the first attempt failed with an error page after about thirty seconds, and the browser "
    "offered to submit the form again",
    "the payment page froze after we pressed the button, and after a minute we reloaded it and "
    "entered the card details a second time",
    "the checkout showed a gateway timeout, and the help text suggested trying again, which we did",
)
_THANKS = (
    "Thank you for looking into this. We have been customers for {years} years and this is the first "
    "problem of this kind.",
    "Many thanks in advance. We have used your service for {years} years without a billing problem "
    "until now.",
    "Thanks for your help with this. In {years} years with you we have never had to ask for a refund.",
)
_ASK = (
    "Could you confirm when the refund will arrive and whether we need to do anything to prevent the "
    "same thing on next month's {what}?",
    "Please let us know how long the refund usually takes and whether the next {what} could be "
    "affected as well.",
    "Can you tell us when to expect the money back, and how we can stop this happening on the next {what}?",
)

#: The paragraphs of a ticket, in the order ``payload._TICKET_PARTS`` has them: the same mix of
#: e-mail addresses (two per five paragraphs) and phone numbers (two per five).
_PARTS = (
    "Hello support team, I am writing on behalf of our accounts department about {what} {invoice} "
    "(our reference {uid}), which was charged twice this month. Please reply to "
    "{first}.{last}.{uid}@{domain} or call me on +1 {area} 555 01{d1:02d} during office hours, {days}. ",
    "We checked the billing page and both charges show the same amount and the same reference, so it "
    "looks like the retry after a timeout went through as a second payment. Our {role}, who "
    "approves refunds on our side, can be reached at {team}.{uid}@{domain2}. ",
    "For context, {failure}. We did that once. The second attempt succeeded and we received one "
    "confirmation email, but the bank statement lists two debits of {amount}. ",
    "If you need to reach someone outside those hours, our operations desk answers on "
    "({area2}) 555-01{d2:02d} and forwards urgent messages. We would prefer a refund to the original "
    "card rather than a credit note, because the budget for this quarter is already closed. ",
    "{thanks} {ask} Kind regards, {First}. ",
)


def uid(i: int) -> str:
    """Request ``i``'s id: ``UID_WIDTH`` lower-case letters (base 26; distinct for 26**5 requests)."""
    out = []
    for _ in range(UID_WIDTH):
        i, r = divmod(i, 26)
        out.append(_LETTERS[r])
    return "".join(reversed(out))


def _fields(rng: random.Random) -> dict[str, Any]:
    first = rng.choice(_FIRST)
    return {
        "first": first,
        "First": first.capitalize(),
        "last": rng.choice(_LAST),
        "uid": MARKER,
        "domain": rng.choice(_DOMAINS),
        "domain2": rng.choice(_DOMAINS),
        "team": rng.choice(_TEAMS),
        "area": rng.choice((212, 303, 415, 512, 617, 646, 720, 312)),
        "area2": rng.choice((206, 305, 404, 503, 602, 702, 808, 919)),
        "d1": rng.randrange(100),
        "d2": rng.randrange(100),
        "days": rng.choice(_DAYS),
        "role": rng.choice(_ROLES),
        "what": rng.choice(_WHAT),
        "invoice": rng.randrange(1000, 9999),
        "failure": rng.choice(_FAILURE),
        "amount": f"${rng.randrange(40, 4000)}.{rng.randrange(100):02d}",
        "thanks": rng.choice(_THANKS).format(years=rng.randrange(2, 12)),
        "ask": rng.choice(_ASK).format(what=rng.choice(_WHAT)),
    }


def ticket_template(size: int, rng: random.Random) -> str:
    """One ticket of about ``size`` characters with ``MARKER`` where the request id goes: whole
    paragraphs (new names, numbers and phrasing every five), cut at the last space before
    ``size`` so no address or word is cut in half."""
    out: list[str] = []
    total, n = 0, 0
    fields: dict[str, Any] = {}
    while total < size:
        if n % len(_PARTS) == 0:
            fields = _fields(rng)
        part = _PARTS[n % len(_PARTS)].format(**fields)
        out.append(part)
        total += len(part)
        n += 1
    text = "".join(out)
    cut = text.rfind(" ", 0, size + 1)
    return text[: cut if cut > 0 else size].rstrip()


class TicketSet:
    """``count`` ticket bodies of ``size`` characters of user message, generated from ``seed``.

    ``body(i)`` is request ``i``'s body: ticket ``i % count`` with ``uid(i)`` in its addresses, the
    constant system prompt of ``payload.MESSAGES`` first. With ``same`` every request gets
    ``body(0)`` (the old benchmark's behaviour: one body, every text cache hit)."""

    def __init__(self, size: int, count: int = COUNT, seed: int = SEED, same: bool = False) -> None:
        rng = random.Random(f"{seed}:{size}")
        self.size, self.same = size, same
        self.templates = [ticket_template(size, rng) for _ in range(1 if same else count)]
        # The JSON body split at the markers: request i's body is the pieces joined with uid(i).
        self.pieces = [_body(t).split(MARKER) for t in self.templates]

    def __len__(self) -> int:
        return len(self.templates)

    def text(self, i: int) -> str:
        """Request ``i``'s user message."""
        return self.templates[i % len(self.templates)].replace(MARKER, uid(0 if self.same else i))

    def body(self, i: int) -> bytes:
        """Request ``i``'s JSON body."""
        pieces = self.pieces[i % len(self.pieces)]
        return uid(0 if self.same else i).join(pieces).encode()

    def write_lua(self, lua: Path, bodies: Path) -> None:
        """A wrk script sending ``body(0)``, ``body(1)``, ... (one per ``request()`` call).

        The templates go to ``bodies`` (one JSON body per line: JSON has no raw newline), which
        the script reads at start and splits at the markers; per request it joins ticket
        ``n % count``'s pieces with ``uid(n)``, a copy of the body: microseconds of wrk's CPU even
        at 64 KB.

        ``n`` goes on from run to run: ``done()`` writes the next free id (the ids handed out plus
        ``SLACK`` for requests wrk prepared but did not count) to ``<lua>.next`` and ``setup()``
        of the next run starts there. Without that every wrk run (each row, round and warm-up)
        would resend ids 0, 1, ... to a sidecar that cached their token counts in the run before.
        One Lua state per wrk thread, each counting from the same start: the benchmarks run
        ``-t1``."""
        bodies.write_text("".join(MARKER.join(p) + "\n" for p in self.pieces))
        headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in payload.HEADERS.items())
        lua.write_text(
            f"""-- generated by benchmarks/tickets.py: cycles through {len(self.pieces)} ticket bodies
wrk.method = "POST"
{headers}
local marker = "{MARKER}"
local same = {"true" if self.same else "false"}
local tickets = {{}}
for line in io.lines("{bodies}") do
  local pieces, at = {{}}, 1
  while true do
    local s, e = string.find(line, marker, at, true)
    if not s then break end
    pieces[#pieces + 1] = string.sub(line, at, s - 1)
    at = e + 1
  end
  pieces[#pieces + 1] = string.sub(line, at)
  tickets[#tickets + 1] = pieces
end
local letters = "{_LETTERS}"
local function uid(i)
  local out = {{}}
  for k = {UID_WIDTH}, 1, -1 do
    local r = i % 26
    out[k] = string.sub(letters, r + 1, r + 1)
    i = (i - r) / 26
  end
  return table.concat(out)
end
local state = "{lua}.next"
local function first_id()
  local f = io.open(state, "r")
  if not f then return 0 end
  local v = tonumber(f:read("*l")) or 0
  f:close()
  return v
end
n = 0  -- global: setup() sets it in each thread's Lua state
setup = function(thread)
  thread:set("n", first_id())
end
request = function()
  local id = same and 0 or n
  local body = table.concat(tickets[(n % #tickets) + 1], uid(id))
  n = n + 1
  return wrk.format(nil, nil, nil, body)
end
done = function(summary, latency, requests)
  local f = assert(io.open(state, "w"))
  f:write(string.format("%d\\n", first_id() + summary.requests + summary.errors.write + {SLACK}))
  f:close()
{payload.WRK_REPORT_LUA}
end
"""
        )


def _body(text: str) -> str:
    body = {
        "model": "gpt-4o-mini",
        "messages": [payload.MESSAGES[0], {"role": "user", "content": text}],
        "temperature": 0.2,
        "max_tokens": 400,
        "user": "bench-user-0001",
    }
    return json.dumps(body, separators=(",", ":"))
