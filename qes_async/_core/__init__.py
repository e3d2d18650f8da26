"""The pure core shared by every layer: models, errors, converters, redaction. No I/O."""
