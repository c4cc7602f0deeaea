"""The official `openai` Python client, unchanged, against Ferrobase's AI gateway.

Env: FB_AI_URL ({project}/ai/v1), FB_TOKEN (a user's access token), FB_ANON,
FB_MODE (`stub`: the in-test upstream; `fakellm`: the fakellm server).
Prints "openai OK" at the end; any failed expectation raises.
"""

import base64
import os

import openai
from openai import OpenAI

url = os.environ["FB_AI_URL"]
mode = os.environ["FB_MODE"]
client = OpenAI(base_url=url, api_key=os.environ["FB_TOKEN"], max_retries=0, timeout=20)
hello = [{"role": "user", "content": "hello gateway"}]

if mode == "fakellm":
    # Non-streaming and streaming through to fakellm; its rule answers "hello".
    r = client.chat.completions.create(model="gpt-4o-mini", messages=hello)
    assert r.choices[0].message.content == "Hi from fakellm behind the gateway", r
    text = ""
    for chunk in client.chat.completions.create(model="gpt-4o-mini", messages=hello, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
    assert text == "Hi from fakellm behind the gateway", text
    # fakellm answers 429 for this one: the gateway falls back to the next provider.
    r = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "please limit-me now"}]
    )
    assert r.choices[0].message.content == "Hello from stub", r
    print("openai OK")
    raise SystemExit(0)

# Non-streaming, through an alias.
r = client.chat.completions.create(model="fast", messages=hello)
assert r.choices[0].message.content == "Hello from stub", r
assert r.usage.total_tokens == 15, r.usage
assert r.model == "stub-model", r.model

# Tools and response_format are passed through; tool calls come back typed.
r = client.chat.completions.create(
    model="stub-model",
    messages=[
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather where this photo was taken?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ],
    tools=[
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ],
    response_format={"type": "json_object"},
)
call = r.choices[0].message.tool_calls[0]
assert call.function.name == "get_weather" and call.function.arguments == '{"city":"Paris"}', call
assert r.choices[0].finish_reason == "tool_calls"

# Streaming, with the usage chunk requested.
text, usage = "", None
stream = client.chat.completions.create(
    model="stub-model", messages=hello, stream=True, stream_options={"include_usage": True}
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage
assert text == "Hello world", text
assert usage is not None and usage.completion_tokens == 4, usage

# Embeddings (float and base64), images, models.
e = client.embeddings.create(model="stub-embed", input=["one", "two"])
assert len(e.data) == 2 and e.data[0].embedding == [0.25, -0.5, 1.0], e
e = client.embeddings.create(model="stub-embed", input="one", encoding_format="base64")
assert isinstance(e.data[0].embedding, str) and len(base64.b64decode(e.data[0].embedding)) == 12
img = client.images.generate(model="stub-image", prompt="a red fox", size="256x256")
assert img.data[0].b64_json.startswith("iVBOR"), img
ids = [m.id for m in client.models.list()]
assert ids == ["stub-model", "stub-embed", "stub-image", "fast"], ids

# Errors arrive as the client's typed exceptions.
try:
    client.chat.completions.create(model="gpt-not-allowed", messages=hello)
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as err:
    assert err.status_code == 404 and err.code == "model_not_found", err
try:
    client.chat.completions.create(model="stub-model", messages=[])
    raise AssertionError("empty messages accepted")
except openai.BadRequestError as err:
    assert err.param == "messages", err
try:
    OpenAI(base_url=url, api_key="not-a-token", max_retries=0).models.list()
    raise AssertionError("bad token accepted")
except openai.AuthenticationError as err:
    assert err.status_code == 401, err
try:
    OpenAI(base_url=url, api_key=os.environ["FB_ANON"], max_retries=0).models.list()
    raise AssertionError("anon key accepted")
except openai.PermissionDeniedError as err:
    assert err.code == "anon_not_allowed", err

print("openai OK")
