"""The HTTP front door: Lambda's REST-JSON API, SigV4, function URLs, health; asyncio throughout."""
