// The Anthropic TypeScript SDK making one message call; prints how it ended, so a test can see
// the meter's budget refusal arrive as the SDK's own RateLimitError with its message.
import Anthropic from "@anthropic-ai/sdk";
import { EnvHttpProxyAgent } from "undici";

const client = new Anthropic({
  apiKey: "sk-ant-node-test-secret",
  maxRetries: 0,
  fetchOptions: { dispatcher: new EnvHttpProxyAgent() },
});
try {
  await client.messages.create({
    model: "claude-sonnet-4-5",
    max_tokens: 256,
    messages: [{ role: "user", content: "Say hello" }],
  });
  console.log(JSON.stringify({ outcome: "ok" }));
} catch (error) {
  console.log(JSON.stringify({
    outcome: "error", class: error.constructor.name, status: error.status, message: error.message,
  }));
}
