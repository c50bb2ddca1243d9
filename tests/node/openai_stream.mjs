// The OpenAI Node SDK, streaming a chat completion without asking for usage.
import OpenAI from "openai";
import { EnvHttpProxyAgent } from "undici";

const client = new OpenAI({
  apiKey: "sk-proj-node-test-secret",
  maxRetries: 0,
  fetchOptions: { dispatcher: new EnvHttpProxyAgent() },
});
const stream = await client.chat.completions.create({
  model: "gpt-4.1",
  stream: true,
  messages: [{ role: "user", content: "Say hello" }],
});
let text = "";
let usageChunks = 0;
for await (const chunk of stream) {
  text += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) usageChunks += 1;
}
console.log(JSON.stringify({ text, usageChunks }));
