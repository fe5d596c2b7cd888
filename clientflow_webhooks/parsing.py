import uuid


def is_uuid(value: str) -> bool:
    """Whether a value from a URL or form is a UUID (before it reaches a query)."""
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
