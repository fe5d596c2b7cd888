from django import template

register = template.Library()


@register.filter
def success_rate(endpoint) -> str:
    """Succeeded share of the deliveries that ended in 24 h, rounded down to 0.1 %, so that
    199 of 200 never reads as 100 %."""
    ended = getattr(endpoint, "ended_24h", 0)
    if not ended:
        return "—"
    tenths = endpoint.succeeded_24h * 1000 // ended
    return f"{tenths // 10}.{tenths % 10} %" if tenths % 10 else f"{tenths // 10} %"
