"""Test helpers that other projects can import: hypothesis strategies, oracles, and the
schedule identities run on a user's own arrays (:func:`check_schedule_identities`)."""

from .identities import (
    IdentityReport,
    IdentityRow,
    assert_schedule_identities,
    check_schedule_constructor,
    check_schedule_identities,
)

__all__ = [
    "IdentityReport",
    "IdentityRow",
    "assert_schedule_identities",
    "check_schedule_constructor",
    "check_schedule_identities",
]
