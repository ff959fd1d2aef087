"""``promote:`` on a step: staged rollout from shadow to enforce, and what the chain reads of it.

The chain layer only knows two things: the configuration (validated with the step) and a
``Rollout`` — an object whose ``percent`` says, right now, on what share of requests the step
enforces (the rest run as shadow, exactly like a fixed ``canary``). Who moves that percentage
(the promotion book in ``proxy.policy.promotion``, fed by live traffic and labels) is above this
layer, so the chain stays a pure function of its steps.
"""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Rollout(Protocol):
    """The live canary share of a promoted step (read once per request, per hook)."""

    @property
    def percent(self) -> float: ...


class PromoteConfig(BaseModel):
    """Move a shadow step to enforce through canary stages, rolling back on a bad rate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[float, ...] = Field(
        description="canary percentages after the shadow stage, increasing, e.g. [5, 25, 100]; "
        "the step is fully enforced once it reaches 100",
        min_length=1,
    )
    min_minutes: float = Field(
        default=30, gt=0, description="minutes each stage (shadow included) runs before the next one"
    )
    min_requests: int = Field(
        default=100, ge=1, description="requests a stage must see before it may advance or roll back"
    )
    max_block_rate: float = Field(
        default=0.02,
        gt=0,
        le=1,
        description="share of requests the step acts on (block, redact, ...; shadow 'would have' "
        "included) above which it rolls back to shadow (in the shadow stage: does not advance)",
    )
    max_false_positive_rate: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="with review labels: share of the step's labelled hits that reviewers marked "
        "benign, above which it rolls back",
    )
    min_labels: int = Field(
        default=20, ge=1, description="labelled hits needed before max_false_positive_rate applies"
    )

    @model_validator(mode="after")
    def _increasing(self) -> PromoteConfig:
        if any(not 0 < s <= 100 for s in self.steps):
            raise ValueError("promote.steps are percentages in (0, 100]")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("promote.steps must increase, e.g. [5, 25, 100]")
        return self
