"""One router per resource: health, styles, model, stylize."""
