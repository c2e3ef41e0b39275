"""One module per benchmark of issue 8; each has ``run(ctx, result)`` filling a ``Result``."""
