from django import template

register = template.Library()


@register.filter
def success_rate(endpoint, period: str = "24h") -> str:
    """Succeeded share of the deliveries of the period ("24h" or "7d") that ended, rounded
    down to 0.1 %, so that 199 of 200 never reads as 100 %."""
    ended = getattr(endpoint, f"ended_{period}", 0)
    if not ended:
        return "—"
    tenths = getattr(endpoint, f"succeeded_{period}") * 1000 // ended
    return f"{tenths // 10}.{tenths % 10} %" if tenths % 10 else f"{tenths // 10} %"
