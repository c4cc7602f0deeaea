// The official `openai` npm client, unchanged, against Ferrobase's AI gateway
// (its upstream is the in-test stub). Spec (argv[2], JSON): {url, token, anon}.
// Prints "checks passed" at the end; any failed expectation throws.
import assert from "node:assert/strict";
import OpenAI from "openai";

const spec = JSON.parse(process.argv[2]);
const client = new OpenAI({ baseURL: spec.url, apiKey: spec.token, maxRetries: 0, timeout: 20_000 });
const hello = [{ role: "user", content: "hello gateway" }];

// Non-streaming, through an alias.
let r = await client.chat.completions.create({ model: "fast", messages: hello });
assert.equal(r.choices[0].message.content, "Hello from stub");
assert.equal(r.usage.total_tokens, 15);
assert.equal(r.model, "stub-model");

// Tools, an image part and response_format pass through; tool calls come back.
r = await client.chat.completions.create({
  model: "stub-model",
  messages: [{ role: "user", content: [
    { type: "text", text: "Weather where this photo was taken?" },
    { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
  ] }],
  tools: [{ type: "function", function: { name: "get_weather",
    parameters: { type: "object", properties: { city: { type: "string" } } } } }],
  response_format: { type: "json_object" },
});
const call = r.choices[0].message.tool_calls[0];
assert.equal(call.function.name, "get_weather");
assert.equal(call.function.arguments, '{"city":"Paris"}');
assert.equal(r.choices[0].finish_reason, "tool_calls");

// Streaming, with the usage chunk requested.
let text = "";
let usage = null;
const stream = await client.chat.completions.create({
  model: "stub-model", messages: hello, stream: true, stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  if (chunk.choices?.[0]?.delta?.content) text += chunk.choices[0].delta.content;
  if (chunk.usage) usage = chunk.usage;
}
assert.equal(text, "Hello world");
assert.equal(usage?.completion_tokens, 4);

// Embeddings, images, models.
const e = await client.embeddings.create({ model: "stub-embed", input: ["one", "two"], encoding_format: "float" });
assert.equal(e.data.length, 2);
assert.deepEqual(e.data[0].embedding, [0.25, -0.5, 1.0]);
const img = await client.images.generate({ model: "stub-image", prompt: "a red fox", size: "256x256" });
assert.ok(img.data[0].b64_json.startsWith("iVBOR"));
const ids = [];
for await (const m of client.models.list()) ids.push(m.id);
assert.deepEqual(ids, ["stub-model", "stub-embed", "stub-image", "fast"]);

// Errors arrive as the client's typed exceptions.
await assert.rejects(client.chat.completions.create({ model: "gpt-not-allowed", messages: hello }),
  (err) => err instanceof OpenAI.NotFoundError && err.code === "model_not_found");
await assert.rejects(client.chat.completions.create({ model: "stub-model", messages: [] }),
  (err) => err instanceof OpenAI.BadRequestError && err.param === "messages");
await assert.rejects(new OpenAI({ baseURL: spec.url, apiKey: "not-a-token", maxRetries: 0 }).models.list(),
  (err) => err instanceof OpenAI.AuthenticationError && err.status === 401);
await assert.rejects(new OpenAI({ baseURL: spec.url, apiKey: spec.anon, maxRetries: 0 }).models.list(),
  (err) => err instanceof OpenAI.PermissionDeniedError && err.code === "anon_not_allowed");

console.log("checks passed");
