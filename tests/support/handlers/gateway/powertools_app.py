"""An AWS Lambda Powertools REST app, as its users write it, behind a function URL."""

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

app = APIGatewayHttpResolver()


@app.get("/hello/<name>")
def hello(name: str):
    return {"message": f"hello {name}", "query": app.current_event.get_query_string_value("q")}


@app.post("/items")
def create_item():
    return {"created": app.current_event.json_body}, 201


def handler(event, context):
    return app.resolve(event, context)
