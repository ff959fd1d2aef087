"""Re-export: client-body validation lives in ``proxy.models.validate`` (below the routes, so
replay and calibrate use it too without importing the routes)."""

from proxy.models.validate import ROLES, check_depth, too_many, validate_body

__all__ = ["ROLES", "check_depth", "too_many", "validate_body"]
