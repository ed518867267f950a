"""The handler a spare imports and invokes once before its hand-off, then forgets (child.py).

Imported as a top-level module from this directory, compiled from source, exactly as a
function's handler module is: the point is to have walked those paths, not to do anything.
"""


def handler(event: object, context: object) -> object:
    return event
