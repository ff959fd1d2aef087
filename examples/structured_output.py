"""Structured output through the sidecar with the official openai SDK.

    policy-sidecar serve --policy policies/schema.yaml --port 8080 &   # schema enforcement on
    python examples/structured_output.py

(``policy-sidecar demo`` works too: the demo upstream answers a JSON Schema request with a
valid instance, but the default policy does not enforce schemas, so in the last step the SDK
itself fails on the malformed answer, which is exactly what the plugin prevents.)

The application code is plain SDK code: ``parse`` / ``stream`` with a Pydantic model, a strict
tool. What the sidecar adds is the guarantee: a valid answer, or a typed error (HTTP 502,
``code == "output_schema_violation"``), never malformed JSON presented as success.
"""

from __future__ import annotations

import json
import os

import openai
from pydantic import BaseModel, ValidationError


class Person(BaseModel):
    name: str
    age: int


class GetWeather(BaseModel):
    city: str


PARIS = {"name": "GetWeather", "arguments": '{"city": "Paris"}'}


def main() -> None:
    client = openai.OpenAI(
        base_url=os.environ.get("SIDECAR_URL", "http://127.0.0.1:8080/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "demo-key"),
        max_retries=0,
    )
    messages: list[dict[str, str]] = [{"role": "user", "content": "Who wrote the first program?"}]

    answer = client.chat.completions.parse(model="demo-model", messages=messages, response_format=Person)  # type: ignore[arg-type]
    print("parsed:", answer.choices[0].message.parsed)

    with client.chat.completions.stream(model="demo-model", messages=messages, response_format=Person) as s:  # type: ignore[arg-type]
        final = s.get_final_completion().choices[0].message.parsed
    print("stream parsed:", json.dumps(final.model_dump() if final else None))

    tools = [openai.pydantic_function_tool(GetWeather)]
    weather = client.chat.completions.parse(
        model="demo-model",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=tools,
        extra_headers={  # the demo upstream: script a tool call
            "x-fake-scenario": json.dumps(
                {"tool_calls": [{"name": "GetWeather", "arguments": '{"city": "Paris"}'}]}
            )
        },
    )
    calls = weather.choices[0].message.tool_calls or []
    print("tool call:", [(c.function.name, c.function.parsed_arguments) for c in calls])

    response = client.responses.parse(model="demo-model", input="Who?", text_format=Person)
    print("responses parsed:", response.output_parsed)

    # A model that keeps answering with the wrong types (scripted on the demo upstream): the
    # sidecar repairs up to max_repairs times, then answers with a typed error.
    try:
        client.chat.completions.parse(
            model="demo-model",
            messages=messages,  # type: ignore[arg-type]
            response_format=Person,
            extra_headers={"x-fake-scenario": json.dumps({"content": '{"name": 1, "age": "old"}'})},
        )
    except openai.APIStatusError as exc:  # with the schema plugin: a typed error
        print(f"typed error: {exc.status_code} {exc.code}")
    except ValidationError:  # without it, the SDK got the malformed answer as a "success"
        print("no schema enforcement in this policy: the SDK received malformed output")


if __name__ == "__main__":
    main()
