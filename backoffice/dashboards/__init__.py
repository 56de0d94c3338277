"""The region dashboard and national overview: rollups, their selectors and server-side SVG charts."""
