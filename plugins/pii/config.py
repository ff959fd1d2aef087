"""The ``pii`` step's configuration: entity rules, vault backend, output scanning."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from proxy.chain import ROLES, PluginConfig, Roles, Secret, check_names
from proxy.detectors.pii import CustomRecognizer, NerMode
from proxy.detectors.pii.engine import BUILTIN_ENTITIES
from proxy.redis import RedisOptions, parse

Action = Literal["redact", "mask", "hash", "block", "allow"]


def _action_shorthand(schema: dict[str, Any]) -> None:
    """The JSON Schema of ``entities`` accepts the shorthand ``TYPE: action`` the model accepts."""
    rule = schema.get("additionalProperties")
    if isinstance(rule, dict):
        schema["additionalProperties"] = {"anyOf": [{"enum": list(get_args(Action)), "type": "string"}, rule]}


class EntityRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action = "redact"
    threshold: float | None = Field(default=None, ge=0, le=1, description="default: default_threshold")


class PiiConfig(PluginConfig):
    """Redact personal data in prompts (reversibly by default) and restore it in answers."""

    type: Literal["pii"] = "pii"
    ner: NerMode = Field(default="auto", description="names/locations/organisations via spaCy NER")
    recognizers: tuple[CustomRecognizer, ...] = Field(default=(), description="custom regex / deny-lists")
    entities: dict[str, EntityRule] = Field(
        default_factory=dict,
        description="per entity type (an action, e.g. CREDIT_CARD: block, or {action, threshold}): "
        + ", ".join(BUILTIN_ENTITIES)
        + ", or a custom recogniser's type",
        json_schema_extra=_action_shorthand,
    )
    detect: Literal["default", "all"] = Field(
        default="default",
        description="default: contact data, person names, government and financial IDs, credentials "
        "(docs/pii.md), plus the types under entities and recognizers; all: every type the engine knows "
        "(also LOCATION, DATE_TIME, ORGANIZATION, NRP, TITLE, AGE, URL, UUID, MAC_ADDRESS)",
    )
    default_action: Action = Field(default="redact", description="for detected types not in entities")
    default_threshold: float = Field(default=0.4, ge=0, le=1)
    roles: Roles = Field(default=ROLES, description="request roles scanned")
    conversation_header: str = "x-conversation-id"
    bind_to_api_key: bool = Field(default=True, description="conversations are scoped per client key too")
    backend: Literal["memory", "redis"] = "memory"
    redis_url: Secret | None = Field(
        default=None,
        description="redis://, rediss://, redis+sentinel://, redis+cluster:// (docs/deployment.md)",
    )
    redis: RedisOptions | None = Field(default=None, description="cluster, sentinel and TLS settings")
    redis_prefix: str = "sidecar:pii:"
    redis_timeout_ms: int = Field(default=200, ge=1, le=5000)
    ttl: float = Field(default=86400, gt=0, description="seconds a conversation's numbering is kept")
    secret: Secret | None = Field(
        default=None, description="key for hash tokens and vault digests; required with redis"
    )
    mask_text: str = "****"
    restore_tool_arguments: bool = False
    scan_output: Literal["off", "flag", "redact"] = "off"
    output_max_hold: int = Field(default=1000, ge=16, description="stream hold-back for scan_output")
    message: str = Field(default="The request was blocked by policy.", description="public error message")

    @field_validator("ner", "scan_output", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        return "off" if value is False else value  # YAML 1.1 reads a bare off as false

    @field_validator("entities", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"action": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("entities")
    @classmethod
    def _names(cls, value: dict[str, EntityRule], info: ValidationInfo) -> dict[str, EntityRule]:
        # A misspelt type (EMAIL for EMAIL_ADDRESS) would silently leave that data in clear.
        custom = tuple(r.entity_type for r in info.data.get("recognizers", ()))
        check_names(value, (*BUILTIN_ENTITIES, *custom), "PII entity type")
        return value

    @model_validator(mode="after")
    def _check(self) -> PiiConfig:
        if self.backend == "redis" and (self.redis_url is None or self.secret is None):
            raise ValueError("backend: redis needs redis_url and secret (shared by every replica)")
        if self.redis_url is not None:
            parse(self.redis_url.get_secret_value(), self.redis)  # a URL that cannot work fails here
        return self
