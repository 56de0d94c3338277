"""Money on screens: integer fen shown as yuan, by integer arithmetic (never float)."""


def format_yuan(fen: int | None, *, grouped: bool = True, empty: str = "—") -> str:
    """123456 -> "1,234.56" (grouped, for reading) or "1234.56" (for a form's input)."""
    if fen is None:
        return empty
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole:,}.{cents:02d}" if grouped else f"{sign}{whole}.{cents:02d}"
