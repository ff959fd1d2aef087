"""The ``schema`` step's configuration: output contracts from the policy and request-side limits."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from proxy.chain import Match, PluginConfig


class PolicyContract(BaseModel):
    """An output contract from the policy, for the requests ``match`` selects (first match wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: Match | None = Field(default=None, description="routes / models / tenants; empty: all")
    json_schema: dict[str, Any] | None = Field(
        default=None, description="inline JSON Schema (Draft 2020-12) the answer's content must satisfy"
    )
    json_schema_file: str | None = Field(
        default=None, description="a .json or .yaml schema file, relative to the policy's directory"
    )
    strict: bool = Field(default=False, description="close objects and require all their properties")
    allowed_tools: tuple[str, ...] | None = Field(
        default=None, description="tools requests may declare and answers may call"
    )

    @model_validator(mode="after")
    def _one_schema(self) -> PolicyContract:
        if self.json_schema is not None and self.json_schema_file is not None:
            raise ValueError("give json_schema or json_schema_file, not both")
        return self


class RequestLimits(BaseModel):
    """Request-side contracts: each violation is a 400 before anything is sent upstream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_models: tuple[str, ...] | None = Field(default=None, description="glob patterns")
    max_tokens: int | None = Field(
        default=None, ge=1, description="max_tokens / max_completion_tokens / max_output_tokens"
    )
    max_messages: int | None = Field(default=None, ge=1, description="messages (or input items)")
    max_tools: int | None = Field(default=None, ge=0)
    required_fields: tuple[str, ...] = Field(default=(), description="top-level body fields, e.g. user")


class SchemaConfig(PluginConfig):
    """Validate JSON outputs and tool calls against request and policy contracts; repair or reject."""

    type: Literal["schema"] = "schema"
    stream: Literal["buffer", "validate_at_end", "skip", "reject"] = Field(
        description="streamed answers: buffer (validate, repair, then stream), validate_at_end "
        "(in-band error at the end), skip, or reject streamed requests"
    )
    on_failure: Literal["repair", "reject", "flag"] = Field(
        default="reject",
        description="repair: re-ask with the errors, then 502 if still invalid; reject: 502; "
        "flag: pass with x-sidecar-flags and a record",
    )
    max_repairs: int = Field(default=2, ge=1, le=5, description="repair requests at most")
    repair_target: Literal["same", "next"] = Field(
        default="same", description="next: repair on the next fallback target of the route, if any"
    )
    repair_token_budget: int | None = Field(
        default=None, ge=1, description="tokens all attempts may use; no repair starts beyond it"
    )
    extraction: Literal["strict", "lenient"] = Field(
        default="strict", description="lenient: accept JSON in code fences or after a sentence"
    )
    request_contracts: bool = Field(default=True, description="enforce response_format and tool schemas")
    contracts: tuple[PolicyContract, ...] = Field(default=(), description="policy contracts, first match")
    request: RequestLimits | None = None
    cache_size: int = Field(default=256, ge=1, description="compiled request schemas kept (LRU)")
    message: str = "The model's answer did not match the required output format."
