import uuid

# The largest id a bigint column holds: asking for more must be a 404 or 400, not a 500.
MAX_ID = 2**63 - 1


def is_uuid(value: str) -> bool:
    """Whether a value from a URL or form is a UUID (before it reaches a query)."""
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
