"""A FastAPI app wrapped by Mangum, as its users deploy it, behind a function URL."""

from fastapi import FastAPI, Response
from mangum import Mangum

api = FastAPI()


@api.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None):
    return {"item_id": item_id, "q": q}


@api.post("/echo")
async def echo(payload: dict):
    return {"got": payload}


@api.get("/teapot")
def teapot(response: Response):
    response.status_code = 418
    response.set_cookie("brew", "green")
    return {"short": "and stout"}


handler = Mangum(api, lifespan="off")
