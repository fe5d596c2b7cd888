from django.core.exceptions import ValidationError


def validation_message(exc: ValidationError) -> str:
    """One line naming each field and its messages, for commands and logs."""
    if hasattr(exc, "error_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)
