"""DarkStar (Operator Foundation): the polish of shadow-DarkStar, Starbridge and Replicant."""
