"""Talk to the sidecar with the official openai SDK: only base_url changes.

pip install -e '.[demo]'          # the sidecar and the openai SDK
policy-sidecar demo --port 8080 &
python examples/openai_client.py
"""

from __future__ import annotations

import os

import openai


def main() -> None:
    client = openai.OpenAI(
        base_url=os.environ.get("SIDECAR_URL", "http://127.0.0.1:8080/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "demo-key"),  # forwarded when the policy says passthrough
    )
    answer = client.chat.completions.create(
        model="demo-model",
        messages=[{"role": "user", "content": "My key is sk-abcdefghijklmnopqrstuvwx, keep it safe."}],
    )
    print("non-stream:", answer.choices[0].message.content)

    stream = client.chat.completions.create(
        model="demo-model",
        messages=[{"role": "user", "content": "Stream me something."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    print("stream:    ", end="")
    for chunk in stream:
        for choice in chunk.choices:
            print(choice.delta.content or "", end="", flush=True)
        if chunk.usage:
            print(f"\nusage:      {chunk.usage.total_tokens} tokens")


if __name__ == "__main__":
    main()
